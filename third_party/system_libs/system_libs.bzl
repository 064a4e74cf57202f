"""Repository rule that turns Debian system libraries into cc_library targets.

Each target's compile and link flags come from `pkg-config`, so the build uses
exactly what `./sphere deps` installed and downloads nothing.
"""

# target name -> (pkg-config modules, extra link flags)
_LIBS = {
    "grpc++": (["grpc++"], []),
    "grpc++_reflection": (["grpc++"], ["-lgrpc++_reflection"]),
    "protobuf": (["protobuf"], []),
    "gtest": (["gtest", "gmock"], []),
    "gtest_main": (["gtest_main", "gmock"], []),
    "benchmark": (["benchmark"], ["-lbenchmark_main"]),
    "benchmark_nomain": (["benchmark"], []),
    "rocksdb": (["rocksdb"], []),
    "openssl": (["openssl"], []),
    # libgoogle-perftools-dev: tcmalloc (minimal: no heap profiler), the
    # server and loadgen binaries' allocator (see //third_party/system_libs:malloc).
    "tcmalloc": (["libtcmalloc_minimal"], []),
    # prometheus-cpp-dev: metrics registry (core) and HTTP exposer (pull).
    "prometheus": (["prometheus-cpp-pull", "prometheus-cpp-core"], []),
    # libcpp-httplib-dev: small HTTPS servers (appsvc's web pages).
    "httplib": (["cpp-httplib"], []),
    "absl": ([
        "absl_base",
        "absl_status",
        "absl_statusor",
        "absl_strings",
        "absl_str_format",
        "absl_synchronization",
        "absl_time",
        "absl_flags",
        "absl_flags_parse",
        "absl_flags_usage",
        "absl_hash",
        "absl_raw_hash_set",
        "absl_flat_hash_map",
        "absl_flat_hash_set",
        "absl_random_random",
        "absl_cleanup",
        "absl_span",
        "absl_failure_signal_handler",
        "absl_symbolize",
    ], []),
}

# Libraries linked for their side effect (no symbol of theirs is named, yet
# they must be linked: tcmalloc, not glibc, must define malloc), so kept even
# under a linker that drops unused shared libraries (--as-needed).
_NO_AS_NEEDED = ["tcmalloc"]

_BORINGSSL_INCLUDE = "/usr/include/android"
_BORINGSSL_LIB = "/usr/lib/x86_64-linux-gnu/android"

def _split(s):
    return [x for x in s.strip().split(" ") if x]

def _system_libs_impl(ctx):
    build = ['package(default_visibility = ["//visibility:public"])', ""]
    for name, (mods, extra) in _LIBS.items():
        res = ctx.execute(["pkg-config", "--cflags", "--libs"] + mods)
        if res.return_code != 0:
            fail("pkg-config %s failed (run ./sphere deps): %s" % (mods, res.stderr))
        copts = []
        linkopts = []
        for flag in _split(res.stdout):
            if flag.startswith("-I") or flag.startswith("-D"):
                copts.append(flag)
            else:
                linkopts.append(flag)
        if name in _NO_AS_NEEDED:
            linkopts = ["-Wl,--push-state,--no-as-needed"] + linkopts + ["-Wl,--pop-state"]
        build.append("cc_library(\n    name = %r,\n    defines = %r,\n    linkopts = %r,\n)\n" % (
            name,
            [f[2:] for f in copts if f.startswith("-D")],
            linkopts + extra,
        ))

    # Header-only JSON library (nlohmann-json3-dev).
    build.append('cc_library(name = "json")\n')

    # Header-only CLI parser (libcli11-dev), used by spherectl.
    build.append('cc_library(name = "cli11")\n')

    # BoringSSL from Debian's android-libboringssl-dev, used by
    # `--config=boringssl` (see common/crypto/BUILD). Its headers live in
    # /usr/include/android/openssl; they are symlinked into this repository so
    # that `includes` can export them as `-isystem` to every dependent, ahead of
    # /usr/include where OpenSSL's headers are. Never link this together with
    # @system//:openssl (or gRPC, which links OpenSSL) in one binary.
    if ctx.path(_BORINGSSL_INCLUDE).exists:
        ctx.symlink(_BORINGSSL_INCLUDE, "boringssl/include")
        build.append("""cc_library(
    name = "boringssl",
    hdrs = glob(["boringssl/include/openssl/*.h"]),
    includes = ["boringssl/include"],
    linkopts = [
        "-L%s",
        "-l:libcrypto.so.0",
        "-Wl,-rpath,%s",
    ],
)
""" % (_BORINGSSL_LIB, _BORINGSSL_LIB))
    else:
        build.append("""cc_library(
    name = "boringssl",
    copts = ["-DSPHERE_BORINGSSL_MISSING"],
    srcs = ["boringssl_missing.cc"],
)
""")
        ctx.file("boringssl_missing.cc", '#error "android-libboringssl-dev is not installed"\n')

    ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % ctx.name)
    ctx.file("BUILD", "\n".join(build))

system_libs = repository_rule(
    implementation = _system_libs_impl,
    local = True,
    environ = ["PKG_CONFIG_PATH"],
)
