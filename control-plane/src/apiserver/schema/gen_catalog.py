#!/usr/bin/env python3
"""Regenerate `catalog.txt`: facts about the Kubernetes API types that the
OpenAPI schemas in k8s-openapi do not carry.

For every protobuf message of the stable built-in API groups it records each
field's JSON name, protobuf field number and type, whether Go holds it in a
pointer (so a zero value is meaningful), whether its JSON tag lacks
`omitempty`, whether it is an inline (embedded) struct, and the patch / list
markers (`patchStrategy`, `patchMergeKey`, `+listType`, `+listMapKey`,
`+mapType`, `+structType`).

Inputs are checkouts of github.com/kubernetes/api and
github.com/kubernetes/apimachinery (their `generated.proto` and `types*.go`).
This is a mechanical extraction of interface facts (names, numbers,
strategies), not a copy of any code.

Usage: gen_catalog.py <kubernetes/api dir> <kubernetes/apimachinery dir> > catalog.txt

Output format (one record per line, fields separated by single spaces):
  T <openapi type name> [atomic] [listwrapper]
  F <json name|-> <number> <o|r|m> <type> [flags...]
flags: ptr, req, inline, ps=<patch strategy>, pk=<merge key>, lt=<list type>,
lk=<key,key>, mt=<map type>, st=<struct type>.
`-` as json name plus `inline` marks an embedded struct flattened in JSON.
"""

import os
import re
import sys

API_GROUPS = [
    "core/v1", "apps/v1", "batch/v1", "autoscaling/v1", "autoscaling/v2",
    "networking/v1", "policy/v1", "rbac/v1", "coordination/v1", "discovery/v1",
    "events/v1", "scheduling/v1", "node/v1", "storage/v1", "authentication/v1",
    "authorization/v1", "certificates/v1", "admissionregistration/v1",
    "flowcontrol/v1",
]
MACHINERY = [
    "pkg/apis/meta/v1", "pkg/runtime", "pkg/util/intstr", "pkg/api/resource",
]

PROTO_FIELD = re.compile(
    r"^\s*(optional|repeated)?\s*([\w.]+|map<\s*[\w.]+\s*,\s*[\w.]+\s*>)\s+(\w+)\s*=\s*(\d+)\s*;")
GO_FIELD = re.compile(r"^\t(?:(\w+)\s+)?(\S+)\s+`([^`]*)`")


def openapi_name(proto_type, package):
    proto_type = proto_type.lstrip(".")
    if "." not in proto_type:
        proto_type = package + "." + proto_type
    if proto_type.startswith("k8s.io."):
        return "io.k8s." + proto_type[len("k8s.io."):]
    return proto_type


def parse_proto(text):
    package = re.search(r"^package ([\w.]+);", text, re.M).group(1)
    messages = {}
    comments = []
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            comments.append(stripped[2:].strip())
            continue
        m = re.match(r"^message (\w+) \{", line)
        if m:
            current = {"name": m.group(1), "fields": [], "markers": comments}
            messages[m.group(1)] = current
            comments = []
            continue
        if current is not None and stripped == "}":
            current = None
            comments = []
            continue
        if current is not None:
            fm = PROTO_FIELD.match(line)
            if fm:
                label, ptype, name, num = fm.groups()
                mm = re.match(r"map<\s*([\w.]+)\s*,\s*([\w.]+)\s*>", ptype)
                if mm:
                    kind, ptype = "m", mm.group(2)
                else:
                    kind = "r" if label == "repeated" else "o"
                current["fields"].append(
                    {"name": name, "num": int(num), "kind": kind, "type": ptype,
                     "markers": comments})
        comments = []
    return package, messages


def tag_value(tags, key):
    m = re.search(key + r':"([^"]*)"', tags)
    return m.group(1) if m else None


def parse_go(text, structs):
    comments = []
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            comments.append(stripped[2:].strip())
            continue
        m = re.match(r"^type (\w+) struct \{", line)
        if m:
            current = {"markers": comments, "fields": {}}
            structs[m.group(1)] = current
            comments = []
            continue
        if current is not None and line.startswith("}"):
            current = None
            comments = []
            continue
        if current is not None:
            fm = GO_FIELD.match(line)
            if fm:
                fname, gotype, tags = fm.groups()
                pb = tag_value(tags, "protobuf")
                js = tag_value(tags, "json")
                if pb is not None and pb != "-":
                    named = re.search(r"name=(\w+)", pb)
                    pbname = named.group(1) if named else "#" + pb.split(",")[1]
                    js = js or ""
                    parts = js.split(",")
                    current["fields"][pbname] = {
                        "json": parts[0],
                        "omitempty": "omitempty" in parts[1:],
                        "inline": fname is None and (parts[0] == "" or "inline" in parts[1:]),
                        "ptr": gotype.startswith("*"),
                        "ps": tag_value(tags, "patchStrategy"),
                        "pk": tag_value(tags, "patchMergeKey"),
                        "markers": comments,
                    }
        comments = []


def markers(lines, key):
    out = []
    for line in lines:
        m = re.match(r"^\+" + key + r"=(\S+)", line)
        if m:
            out.append(m.group(1))
    return out


def emit(root, dirs):
    out = []
    for d in dirs:
        path = os.path.join(root, d)
        with open(os.path.join(path, "generated.proto")) as f:
            package, messages = parse_proto(f.read())
        structs = {}
        for name in sorted(os.listdir(path)):
            if name.endswith(".go") and not name.endswith("_test.go") and not name.startswith(("generated", "zz_")):
                with open(os.path.join(path, name)) as f:
                    parse_go(f.read(), structs)
        for mname, msg in messages.items():
            go = structs.get(mname, {"markers": [], "fields": {}})
            header = ["T", openapi_name(mname, package)]
            type_markers = go["markers"] or msg["markers"]
            if "atomic" in markers(type_markers, "structType"):
                header.append("atomic")
            if any(l.startswith("+protobuf.nullable=true") for l in msg["markers"]):
                header.append("listwrapper")
            out.append(" ".join(header))
            for fld in msg["fields"]:
                g = go["fields"].get(fld["name"]) or go["fields"].get("#%d" % fld["num"])
                ptype = fld["type"]
                if ptype not in ("string", "bytes", "bool", "int32", "int64", "uint32",
                                 "uint64", "double", "float", "sint32", "sint64",
                                 "fixed32", "fixed64"):
                    ptype = openapi_name(ptype, package)
                flags = []
                json_name = fld["name"]
                fmarkers = fld["markers"]
                if g is not None:
                    fmarkers = g["markers"] or fmarkers
                    if g["inline"]:
                        json_name = "-"
                        flags.append("inline")
                    elif g["json"]:
                        json_name = g["json"]
                    if g["ptr"]:
                        flags.append("ptr")
                    if not g["omitempty"] and not g["inline"]:
                        flags.append("req")
                    if g["ps"]:
                        flags.append("ps=" + g["ps"])
                    if g["pk"]:
                        flags.append("pk=" + g["pk"])
                lt = markers(fmarkers, "listType")
                if lt:
                    flags.append("lt=" + lt[0])
                lk = markers(fmarkers, "listMapKey")
                if lk:
                    flags.append("lk=" + ",".join(lk))
                mt = markers(fmarkers, "mapType")
                if mt:
                    flags.append("mt=" + mt[0])
                st = markers(fmarkers, "structType")
                if st:
                    flags.append("st=" + st[0])
                out.append(" ".join(["F", json_name, str(fld["num"]), fld["kind"], ptype] + flags))
    return out


def main():
    api, machinery = sys.argv[1], sys.argv[2]
    lines = emit(machinery, MACHINERY) + emit(api, API_GROUPS)
    print("# Generated by gen_catalog.py from kubernetes/api and kubernetes/apimachinery; do not edit.")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
