#!/usr/bin/python3
"""An Envoy SDS client written with an independent implementation (Debian's python3-grpcio, the gRPC C core, and
python3-protobuf), used by test/sds/python-decoder.test.ts to check that meshcert's SDS server speaks the protocol
and encodes envoy.extensions.transport_sockets.tls.v3.Secret as other implementations read them.

The message classes come from a FileDescriptorSet that `protoc --include_imports --descriptor_set_out=...` made
at test time from Envoy's protos (the copies @grpc/grpc-js-xds ships): nothing generated is committed, and nothing
of the Node code (proto-loader, protobufjs, grpc-js) is involved.

Opens StreamSecrets, subscribes to --name..., and for each of --count responses prints one JSON line on stdout and
ACKs it (version_info and response_nonce of the response), as Envoy does:
  {"version_info": "...", "nonce": "...", "type_url": "...", "resources": [
     {"type_url": "...", "name": "kubernetes://gw", "kind": "tls_certificate",
      "certificate_chain": "-----BEGIN CERTIFICATE-----...", "private_key_sha256": "...", "ocsp_staple_b64": "..."},
     {"type_url": "...", "name": "kubernetes://gw-cacert", "kind": "validation_context",
      "trusted_ca": "-----BEGIN CERTIFICATE-----...", "crl": "-----BEGIN X509 CRL-----..."}]}
On a gRPC error, prints {"error": CODE, "details": "..."} and exits 1; exit 3 when the modules are missing.

Usage: sds_decode.py --descriptor-set FILE --target unix:/path|HOST:PORT --name NAME [--name NAME...] [--count N]
                     [--root-cert FILE --server-name NAME [--client-cert FILE --client-key FILE]] [--timeout S]
"""

import argparse
import base64
import hashlib
import json
import queue
import sys

try:
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
except ImportError as e:  # the test checks this first and skips with the reason
    print(json.dumps({"error": "IMPORT_ERROR", "details": str(e)}))
    sys.exit(3)

SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"
METHOD = "/" + SERVICE + "/StreamSecrets"
SECRET = "envoy.extensions.transport_sockets.tls.v3.Secret"
SECRET_TYPE_URL = "type.googleapis.com/" + SECRET


def load(descriptor_set_path):
    """DiscoveryRequest, DiscoveryResponse and Secret classes from a FileDescriptorSet, in a private pool."""
    fds = descriptor_pb2.FileDescriptorSet()
    with open(descriptor_set_path, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:  # --include_imports lists dependencies first
        pool.Add(fd)
    method = pool.FindServiceByName(SERVICE).FindMethodByName("StreamSecrets")
    factory = message_factory.MessageFactory(pool)
    get = getattr(factory, "GetPrototype", None)
    if get is None:  # protobuf >= 4.x
        get = message_factory.GetMessageClass
    return get(method.input_type), get(method.output_type), get(pool.FindMessageTypeByName(SECRET))


def data(ds):
    """A DataSource's bytes (inline_bytes or inline_string); None when unset."""
    which = ds.WhichOneof("specifier")
    if which == "inline_bytes":
        return ds.inline_bytes
    if which == "inline_string":
        return ds.inline_string.encode()
    return None


def describe(any_msg, Secret):
    out = {"type_url": any_msg.type_url}
    secret = Secret.FromString(any_msg.value)
    out["name"] = secret.name
    kind = secret.WhichOneof("type")
    out["kind"] = kind
    if kind == "tls_certificate":
        t = secret.tls_certificate
        chain = data(t.certificate_chain)
        key = data(t.private_key)
        staple = data(t.ocsp_staple) if t.HasField("ocsp_staple") else None
        out["certificate_chain"] = chain.decode() if chain is not None else None
        out["private_key_sha256"] = hashlib.sha256(key).hexdigest() if key is not None else None
        out["ocsp_staple_b64"] = base64.b64encode(staple).decode() if staple is not None else None
        out["ocsp_staple_specifier"] = t.ocsp_staple.WhichOneof("specifier") if staple is not None else None
    elif kind == "validation_context":
        v = secret.validation_context
        ca = data(v.trusted_ca)
        crl = data(v.crl) if v.HasField("crl") else None
        out["trusted_ca"] = ca.decode() if ca is not None else None
        out["crl"] = crl.decode() if crl is not None else None
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--descriptor-set", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--name", action="append", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--root-cert")
    p.add_argument("--server-name")
    p.add_argument("--client-cert")
    p.add_argument("--client-key")
    p.add_argument("--timeout", type=float, default=20.0)
    args = p.parse_args()

    Request, Response, Secret = load(args.descriptor_set)

    if args.root_cert:
        def read(path):
            if not path:
                return None
            with open(path, "rb") as f:
                return f.read()
        creds = grpc.ssl_channel_credentials(root_certificates=read(args.root_cert), private_key=read(args.client_key),
                                             certificate_chain=read(args.client_cert))
        options = [("grpc.ssl_target_name_override", args.server_name), ("grpc.default_authority", args.server_name)]
        channel = grpc.secure_channel(args.target, creds, options=options)
    else:
        channel = grpc.insecure_channel(args.target)

    outbox = queue.Queue()
    done = object()

    def requests():
        while True:
            item = outbox.get()
            if item is done:
                return
            yield item

    first = Request()
    first.node.id = "python-grpcio~decoder"
    first.node.cluster = "interop"
    first.type_url = SECRET_TYPE_URL
    first.resource_names.extend(args.name)
    outbox.put(first)

    stream = channel.stream_stream(METHOD, request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=Response.FromString)
    responses = stream(requests(), timeout=args.timeout)
    seen = 0
    try:
        for resp in responses:
            line = {
                "version_info": resp.version_info,
                "nonce": resp.nonce,
                "type_url": resp.type_url,
                "resources": [describe(r, Secret) for r in resp.resources],
                "grpc_version": grpc.__version__,
            }
            print(json.dumps(line), flush=True)
            ack = Request()
            ack.type_url = SECRET_TYPE_URL
            ack.version_info = resp.version_info
            ack.response_nonce = resp.nonce
            ack.resource_names.extend(args.name)
            outbox.put(ack)
            seen += 1
            if seen >= args.count:
                break
    except grpc.RpcError as e:
        print(json.dumps({"error": e.code().name, "details": e.details()}), flush=True)
        return 1
    finally:
        outbox.put(done)
        responses.cancel()
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
