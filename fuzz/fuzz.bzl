"""sphere_fuzz_target: one libFuzzer target plus the test that replays its corpus.

    sphere_fuzz_target(
        name = "quote_fuzzer",
        srcs = ["quote_fuzzer.cc"],
        deps = ["//mcu-model:quote"],
    )

defines
  * cc_binary `quote_fuzzer`: under `--config=fuzz` (clang, ASan+UBSan,
    `-fsanitize=fuzzer`) a real libFuzzer binary; in every other build the
    same LLVMFuzzerTestOneInput linked with standalone_main.cc, which only
    replays the files and directories it is given;
  * sh_test `quote_fuzzer_test`: runs the binary once over every file of
    corpus/quote_fuzzer/ (the checked-in seeds and regression inputs), so
    `bazel test //fuzz:all` is a replay under whichever build it runs in.
"""

def sphere_fuzz_target(name, srcs, deps = [], max_len = 65536):
    native.cc_binary(
        name = name,
        srcs = srcs,
        deps = deps + select({
            "//fuzz:fuzzing": [],
            "//conditions:default": ["//fuzz:standalone_main"],
        }),
        linkopts = select({
            "//fuzz:fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        visibility = ["//visibility:private"],
    )
    native.sh_test(
        name = name + "_test",
        size = "small",
        srcs = ["run_corpus.sh"],
        args = [
            "$(location :%s)" % name,
            native.package_name() + "/corpus/" + name,
            str(max_len),
        ],
        data = [":" + name] + native.glob(["corpus/%s/*" % name]),
        tags = ["fuzz"],
    )
