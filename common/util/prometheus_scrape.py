#!/usr/bin/python3
"""Fetches a Prometheus text exposition (an http:// URL, a file, or - for
stdin), parses it with the prometheus_client parser (Debian's
python3-prometheus-client) and prints its samples as one JSON array:
[{"family":..., "type":..., "name":..., "labels":{...}, "value":...}, ...].
Exits 1 with the parser's error when the text is not valid Prometheus text."""
import json
import math
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    src = sys.argv[1]
    if src.startswith("http://"):
        with urllib.request.urlopen(src, timeout=10) as r:
            ctype = r.headers.get("Content-Type", "")
            text = r.read().decode("utf-8")
        if not ctype.startswith("text/plain"):
            print("unexpected Content-Type %r" % ctype, file=sys.stderr)
            return 1
    elif src == "-":
        text = sys.stdin.read()
    else:
        with open(src, encoding="utf-8") as f:
            text = f.read()
    out = []
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out.append({"family": fam.name, "type": fam.type,
                            "name": s.name, "labels": s.labels,
                            # NaN/Inf are valid Prometheus, not JSON.
                            "value": s.value if math.isfinite(s.value)
                            else str(s.value)})
    except Exception as e:  # the parser raises ValueError and others
        print("not Prometheus text: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
