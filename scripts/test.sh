#!/usr/bin/env bash
# The test command of the README and of CI: installs what the interop tests need, then type-checks and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v certtool >/dev/null || need+=(gnutls-bin)
command -v curl >/dev/null || need+=(curl)
# better-sqlite3 compiles from source on Node 20 here: it needs python3, make and g++.
command -v make >/dev/null || need+=(make)
command -v g++ >/dev/null || need+=(g++)
command -v python3 >/dev/null || need+=(python3)
# The independent gRPC client of test/server/python-grpcio.test.ts: Debian's Python (/usr/bin/python3, whatever
# python3 is first on PATH) with its gRPC and protobuf modules, and protoc with the well-known types
# (google/protobuf/struct.proto, from libprotobuf-dev) to make the descriptor set of proto/istio/v1/auth/ca.proto.
# test/sds/python-decoder.test.ts needs the same four, for Envoy's SDS protos (google/protobuf/any.proto & co.).
/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || need+=(python3-grpcio)
/usr/bin/python3 -c 'import google.protobuf' >/dev/null 2>&1 || need+=(python3-protobuf)
command -v protoc >/dev/null || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/struct.proto ] || need+=(libprotobuf-dev)
# `openssl ocsp -port` binds every interface: the staple tests keep it in a private network namespace (ip, unshare).
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]}; install them (apt-get install -y ${need[*]}) or run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

npm ci --no-audit --no-fund
npm run typecheck
npm test
