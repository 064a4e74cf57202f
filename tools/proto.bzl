"""sphere_proto_library: protoc + grpc_cpp_plugin from Debian, wrapped as a cc_library."""

def sphere_proto_library(name, srcs, grpc = True, deps = [], visibility = None):
    """Generates C++ (and gRPC) code for `srcs` and exposes it as cc_library `name`.

    Example:
        sphere_proto_library(name = "sphere_proto", srcs = ["attestation.proto"])
    """
    bases = [s[:-len(".proto")] for s in srcs]
    pkg = native.package_name()
    prefix = pkg + "/" if pkg else ""
    outs = []
    for b in bases:
        outs += [b + ".pb.h", b + ".pb.cc"]
        if grpc:
            outs += [b + ".grpc.pb.h", b + ".grpc.pb.cc"]
    cmd = "protoc -I. --cpp_out=$(GENDIR)"
    if grpc:
        cmd += " --grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin"
    cmd += " " + " ".join([prefix + s for s in srcs])
    native.genrule(
        name = name + "_gen",
        srcs = srcs,
        outs = outs,
        cmd = cmd,
        visibility = ["//visibility:private"],
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["@system//:protobuf"] + (["@system//:grpc++"] if grpc else []),
        visibility = visibility,
    )
