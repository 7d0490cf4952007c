#!/usr/bin/python3
"""Decodes an Envoy bootstrap (JSON on stdin) as envoy.config.bootstrap.v3.Bootstrap with an independent proto3
JSON parser (Debian's python3-protobuf, json_format.Parse with ignore_unknown_fields=False), resolving every
google.protobuf.Any by its @type in a private pool built from a `protoc --include_imports` descriptor set of
Envoy's protos made at test time. Used by test/cli/envoy-config.test.ts beside the protobufjs decoder.

Prints {"ok": true, "bytes": N, "listeners": N, "clusters": N} or {"ok": false, "error": "..."}; exit 0 / 1;
exit 3 when the modules are missing.

Usage: bootstrap_decode.py --descriptor-set FILE < bootstrap.json
"""

import argparse
import json
import sys

try:
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
except ImportError as e:
    print(json.dumps({"ok": False, "error": "IMPORT_ERROR: " + str(e)}))
    sys.exit(3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--descriptor-set", required=True)
    args = ap.parse_args()
    fds = descriptor_pb2.FileDescriptorSet()
    with open(args.descriptor_set, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:  # --include_imports lists dependencies first
        pool.Add(fd)
    desc = pool.FindMessageTypeByName("envoy.config.bootstrap.v3.Bootstrap")
    try:
        cls = message_factory.GetMessageClass(desc)
    except AttributeError:  # older python3-protobuf
        cls = message_factory.MessageFactory(pool).GetPrototype(desc)
    text = sys.stdin.read()
    try:
        msg = json_format.Parse(text, cls(), ignore_unknown_fields=False, descriptor_pool=pool)
    except json_format.ParseError as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        sys.exit(1)
    data = msg.SerializeToString()
    print(json.dumps({"ok": True, "bytes": len(data), "listeners": len(msg.static_resources.listeners), "clusters": len(msg.static_resources.clusters)}))


if __name__ == "__main__":
    main()
