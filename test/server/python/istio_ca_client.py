#!/usr/bin/python3
"""An Istio CA client written with an independent gRPC implementation (Debian's python3-grpcio, the C core, and
python3-protobuf), used by test/server/python-grpcio.test.ts to check that meshcert speaks the Istio CA API as
other implementations do.

The message classes come from a FileDescriptorSet that `protoc --include_imports --descriptor_set_out=...` made
from proto/istio/v1/auth/ca.proto at test time: nothing generated is committed, and nothing of the Node code
(proto-loader, protobufjs, grpc-js) is involved. The key and the CSR are made with the `openssl` command.

Prints one JSON object on stdout:
  {"ok": true, "cert_chain": ["-----BEGIN CERTIFICATE-----...", ...], "key_pem": "..."}
  {"ok": false, "code": "UNAUTHENTICATED", "details": "..."}
Exit status 0 in both cases (a gRPC refusal is an answer); 2 on a usage or local error.

Usage: istio_ca_client.py --descriptor-set FILE --address HOST:PORT --root-cert FILE --server-name NAME
                          --token TOKEN [--spiffe-id URI] [--validity SECONDS] [--metadata JSON]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
except ImportError as e:  # the test checks this first and skips with the reason
    print(json.dumps({"ok": False, "code": "IMPORT_ERROR", "details": str(e)}))
    sys.exit(3)

SERVICE = "istio.v1.auth.IstioCertificateService"
METHOD = "/" + SERVICE + "/CreateCertificate"


def load_messages(descriptor_set_path):
    """Request and response classes from a FileDescriptorSet, in a private pool (not the default one)."""
    fds = descriptor_pb2.FileDescriptorSet()
    with open(descriptor_set_path, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:  # --include_imports lists dependencies first
        pool.Add(fd)
    service = pool.FindServiceByName(SERVICE)
    method = service.FindMethodByName("CreateCertificate")
    factory = message_factory.MessageFactory(pool)
    get = getattr(factory, "GetPrototype", None)
    if get is None:  # protobuf >= 4.x
        get = message_factory.GetMessageClass
    return get(method.input_type), get(method.output_type)


def make_csr(spiffe_id):
    """An EC P-256 key and a PKCS#10 CSR for it (with the SPIFFE ID as URI SAN when given), by the openssl CLI."""
    with tempfile.TemporaryDirectory(prefix="istio-ca-client-") as d:
        key = os.path.join(d, "key.pem")
        csr = os.path.join(d, "csr.pem")
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key],
            check=True, capture_output=True)
        cmd = ["openssl", "req", "-new", "-key", key, "-out", csr, "-subj", "/O=python-grpcio"]
        if spiffe_id:
            cmd += ["-addext", "subjectAltName=URI:" + spiffe_id]
        subprocess.run(cmd, check=True, capture_output=True)
        with open(csr) as f, open(key) as k:
            return f.read(), k.read()


def set_value(value, v):
    """A JSON value into a google.protobuf.Value, field by field (no well-known-type helpers: private pool)."""
    if v is None:
        value.null_value = 0
    elif isinstance(v, bool):
        value.bool_value = v
    elif isinstance(v, (int, float)):
        value.number_value = float(v)
    elif isinstance(v, str):
        value.string_value = v
    elif isinstance(v, list):
        lst = value.list_value
        lst.SetInParent()
        for item in v:
            set_value(lst.values.add(), item)
    elif isinstance(v, dict):
        set_struct(value.struct_value, v)
    else:
        raise TypeError("cannot put %r in a google.protobuf.Value" % (v,))


def set_struct(struct, obj):
    struct.SetInParent()
    for k, v in obj.items():
        set_value(struct.fields[k], v)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--descriptor-set", required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--root-cert", required=True)
    p.add_argument("--server-name", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--spiffe-id")
    p.add_argument("--validity", type=int, default=3600)
    p.add_argument("--metadata", default="{}", help="JSON object sent as the google.protobuf.Struct metadata field")
    p.add_argument("--timeout", type=float, default=20.0)
    args = p.parse_args()

    Request, Response = load_messages(args.descriptor_set)
    csr_pem, key_pem = make_csr(args.spiffe_id)

    req = Request()
    req.csr = csr_pem
    req.subject_id = "ignored-by-meshcert"
    req.validity_duration = args.validity
    set_struct(req.metadata, json.loads(args.metadata))

    with open(args.root_cert, "rb") as f:
        root = f.read()
    creds = grpc.ssl_channel_credentials(root_certificates=root)
    options = [("grpc.ssl_target_name_override", args.server_name), ("grpc.default_authority", args.server_name)]
    with grpc.secure_channel(args.address, creds, options=options) as channel:
        create = channel.unary_unary(
            METHOD,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=Response.FromString,
        )
        try:
            res = create(req, metadata=[("authorization", "Bearer " + args.token)], timeout=args.timeout)
        except grpc.RpcError as e:
            print(json.dumps({"ok": False, "code": e.code().name, "details": e.details()}))
            return 0
    print(json.dumps({"ok": True, "cert_chain": list(res.cert_chain), "key_pem": key_pem,
                      "grpc_version": grpc.__version__}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as e:
        print(json.dumps({"ok": False, "code": "LOCAL_ERROR",
                          "details": "%s: %s" % (" ".join(e.cmd), (e.stderr or b"").decode(errors="replace"))}))
        sys.exit(2)
