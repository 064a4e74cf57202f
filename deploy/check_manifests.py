#!/usr/bin/env python3
"""Checks deploy/*.yaml: valid YAML, the expected objects, and that every
--flag passed to management, shard and etcd is one the binary accepts.

usage: check_manifests.py MANIFEST_DIR MANAGEMENT_BIN SHARD_BIN [ETCD_BIN]
Exits 0 when everything holds; prints each problem otherwise.
"""
import os
import re
import subprocess
import sys

import yaml


def accepted_flags(binary, help_flag):
    out = subprocess.run([binary, help_flag], capture_output=True, text=True,
                         timeout=60)
    text = out.stdout + out.stderr
    return set(re.findall(r"--([a-z][a-z0-9_-]*)", text))


def main():
    manifest_dir, management_bin, shard_bin = sys.argv[1:4]
    etcd_bin = sys.argv[4] if len(sys.argv) > 4 else "/usr/bin/etcd"
    problems = []
    flags = {
        "management": accepted_flags(management_bin, "--helpfull"),
        "shard": accepted_flags(shard_bin, "--helpfull"),
    }
    if os.access(etcd_bin, os.X_OK):
        flags["etcd"] = accepted_flags(etcd_bin, "--help")
    else:
        print("note: %s absent; etcd flags not checked" % etcd_bin)
    for name in ("management", "shard"):
        if len(flags[name]) < 5:
            problems.append("%s --helpfull listed no flags" % name)

    kinds = {}
    checked_args = 0
    for file in sorted(os.listdir(manifest_dir)):
        if not file.endswith(".yaml"):
            continue
        path = os.path.join(manifest_dir, file)
        try:
            with open(path) as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            problems.append("%s: not valid YAML: %s" % (file, e))
            continue
        for doc in docs:
            for key in ("apiVersion", "kind", "metadata"):
                if key not in doc:
                    problems.append("%s: an object lacks %s" % (file, key))
            kind = doc.get("kind")
            name = doc.get("metadata", {}).get("name")
            kinds[(kind, name)] = doc
            spec = doc.get("spec", {}).get("template", {}).get("spec", {})
            for c in spec.get("containers", []):
                cname = c.get("name")
                if cname not in ("management", "shard", "etcd"):
                    continue
                if cname not in flags:
                    continue
                for arg in c.get("args", []):
                    m = re.match(r"--([a-z][a-z0-9_-]*)", arg)
                    if not m:
                        problems.append("%s: %s arg %r is not a --flag" %
                                        (file, cname, arg))
                        continue
                    flag = m.group(1)
                    variants = {flag, flag.replace("-", "_")}
                    if not variants & flags[cname]:
                        problems.append("%s: %s does not accept --%s" %
                                        (file, cname, flag))
                    checked_args += 1

    want = [("StatefulSet", "etcd"), ("Deployment", "management"),
            ("StatefulSet", "shard"), ("Secret", "sphere-pki"),
            ("Secret", "sphere-master-key"), ("Secret", "etcd-tls")]
    for k in want:
        if k not in kinds:
            problems.append("missing %s %s" % k)
    shard = kinds.get(("StatefulSet", "shard"), {})
    if not shard.get("spec", {}).get("volumeClaimTemplates"):
        problems.append("the shard StatefulSet has no volumeClaimTemplates")
    mgmt = kinds.get(("Deployment", "management"), {})
    if mgmt.get("spec", {}).get("replicas", 0) < 2:
        problems.append("management should run at least 2 replicas")

    for p in problems:
        print("FAIL: " + p)
    print("checked %d objects, %d flags" % (len(kinds), checked_args))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
