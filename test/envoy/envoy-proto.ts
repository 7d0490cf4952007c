// Decodes Envoy config JSON (proto3 JSON mapping) against Envoy's own protos, as shipped by @grpc/grpc-js-xds,
// with protobufjs reflection: an unknown field, a wrong type, an unknown enum name, two members of one oneof, or an
// Any whose @type is not in the proto set is an error naming its path. The result is encoded to the wire and
// decoded back, so what passes is a real envoy.config.bootstrap.v3.Bootstrap message. The protoc-gen-validate rules
// Envoy enforces on load (required fields, minimum items, string lengths, number bounds…) are checked too.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { sdsIncludeDirs } from '../../src/sds/sds-protos.js';

/** The Bootstrap and every extension meshcert envoy-config may put in a typed_config. */
export const ENVOY_PROTO_FILES = [
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/rbac/v3/rbac.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/extensions/access_loggers/file/v3/file.proto',
];

let root: protobuf.Root | undefined;

export function envoyRoot(): protobuf.Root {
  if (root) return root;
  const dirs = sdsIncludeDirs();
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => {
    for (const d of dirs) {
      const p = join(d, target);
      if (existsSync(p)) return p;
    }
    return target;
  };
  r.loadSync(ENVOY_PROTO_FILES, { keepCase: true });
  r.resolveAll();
  root = r;
  return r;
}

const WRAPPERS: Record<string, string> = {
  '.google.protobuf.BoolValue': 'bool',
  '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.Int32Value': 'int32',
  '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int64Value': 'int64',
  '.google.protobuf.DoubleValue': 'double',
  '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.StringValue': 'string',
  '.google.protobuf.BytesValue': 'bytes',
};

const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

export class EnvoyProtoError extends Error {}

function fail(path: string, message: string): never {
  throw new EnvoyProtoError(`${path || '(top)'}: ${message}`);
}

function scalar(kind: string, v: unknown, path: string): unknown {
  switch (kind) {
    case 'string':
      if (typeof v !== 'string') fail(path, `expected a string, got ${JSON.stringify(v)}`);
      return v;
    case 'bool':
      if (typeof v !== 'boolean') fail(path, `expected true or false, got ${JSON.stringify(v)}`);
      return v;
    case 'bytes':
      if (typeof v !== 'string' || !/^[A-Za-z0-9+/=_-]*$/.test(v)) fail(path, 'expected base64 bytes');
      return v;
    case 'double':
    case 'float':
      if (typeof v !== 'number') fail(path, `expected a number, got ${JSON.stringify(v)}`);
      return v;
    case 'int32':
    case 'sint32':
    case 'sfixed32':
    case 'uint32':
    case 'fixed32': {
      const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isInteger(n)) fail(path, `expected an integer, got ${JSON.stringify(v)}`);
      if (kind.startsWith('u') || kind === 'fixed32' ? n < 0 || n > 0xffffffff : n < -(2 ** 31) || n >= 2 ** 31) fail(path, `${n} is out of range for ${kind}`);
      return n;
    }
    default: {
      // 64-bit integers: a number or a decimal string.
      if (!(typeof v === 'number' && Number.isInteger(v)) && !(typeof v === 'string' && /^-?\d+$/.test(v))) fail(path, `expected a 64-bit integer, got ${JSON.stringify(v)}`);
      return v;
    }
  }
}

function jsonValue(v: unknown, path: string): unknown {
  if (v === null) return { null_value: 'NULL_VALUE' };
  if (typeof v === 'number') return { number_value: v };
  if (typeof v === 'string') return { string_value: v };
  if (typeof v === 'boolean') return { bool_value: v };
  if (Array.isArray(v)) return { list_value: { values: v.map((x, i) => jsonValue(x, `${path}[${i}]`)) } };
  if (typeof v === 'object') return { struct_value: jsonStruct(v, path) };
  return fail(path, 'not a JSON value');
}
function jsonStruct(v: unknown, path: string): unknown {
  if (!v || typeof v !== 'object' || Array.isArray(v)) fail(path, 'expected an object (google.protobuf.Struct)');
  return { fields: Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, jsonValue(x, `${path}.${k}`)])) };
}

/** Checks `json` as message `type` (proto3 JSON) and returns the form protobufjs's fromObject takes. */
function message(type: protobuf.Type, json: unknown, path: string): Record<string, unknown> | unknown {
  const name = type.fullName;
  if (name === '.google.protobuf.Duration') {
    const m = typeof json === 'string' ? /^(-?\d+)(?:\.(\d{1,9}))?s$/.exec(json) : null;
    if (!m) fail(path, `expected a duration such as "1.5s", got ${JSON.stringify(json)}`);
    return { seconds: Number(m[1]), nanos: m[2] ? Number(m[2].padEnd(9, '0')) : 0 };
  }
  if (name === '.google.protobuf.Timestamp') {
    if (typeof json !== 'string' || Number.isNaN(Date.parse(json))) fail(path, 'expected an RFC 3339 timestamp');
    const ms = Date.parse(json);
    return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
  }
  if (WRAPPERS[name]) return { value: scalar(WRAPPERS[name]!, json, path) };
  if (name === '.google.protobuf.Struct') return jsonStruct(json, path);
  if (name === '.google.protobuf.Value') return jsonValue(json, path);
  if (name === '.google.protobuf.ListValue') {
    if (!Array.isArray(json)) fail(path, 'expected a list');
    return { values: json.map((x, i) => jsonValue(x, `${path}[${i}]`)) };
  }
  if (name === '.google.protobuf.Any') return anyMessage(type, json, path);
  if (!json || typeof json !== 'object' || Array.isArray(json)) fail(path, `expected an object (${name.slice(1)})`);
  const byJsonName = new Map<string, protobuf.Field>();
  for (const f of type.fieldsArray) {
    byJsonName.set(f.name, f);
    byJsonName.set(camel(f.name), f);
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
    const at = path ? `${path}.${key}` : key;
    const field = byJsonName.get(key);
    if (!field) fail(at, `unknown field of ${name.slice(1)}`);
    if (value === null) fail(at, 'null is not allowed here');
    out[field.name] = fieldValue(field, value, at);
  }
  for (const oneof of type.oneofsArray) {
    const set = oneof.fieldsArray.filter((f) => out[f.name] !== undefined);
    if (set.length > 1) fail(path, `oneof ${oneof.name}: only one of ${set.map((f) => f.name).join(', ')} may be set`);
    if (set.length === 0 && oneof.options?.['(validate.required)'] === true) {
      fail(path, `oneof ${oneof.name}: one of ${oneof.fieldsArray.map((f) => f.name).join(', ')} is required (validate.required)`);
    }
  }
  const raw = json as Record<string, unknown>;
  for (const field of type.fieldsArray) {
    const given = Object.prototype.hasOwnProperty.call(raw, field.name) ? raw[field.name] : raw[camel(field.name)];
    const inOneof = field.partOf !== null && !(field.partOf.fieldsArray.length === 1 && field.partOf.name.startsWith('_'));
    if (given === undefined && inOneof) continue; // PGV checks only the member that is set
    checkRules(field, given, path ? `${path}.${field.name}` : field.name);
  }
  return out;
}

/** The protoc-gen-validate rules of a field, as protobufjs parses `[(validate.rules) = {...}]`. */
function rulesOf(field: protobuf.Field): Record<string, any> | undefined { // eslint-disable-line @typescript-eslint/no-explicit-any
  const parsed = (field as unknown as { parsedOptions?: Array<Record<string, unknown>> }).parsedOptions;
  return parsed?.find((o) => '(validate.rules)' in o)?.['(validate.rules)'] as Record<string, any> | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any
}

const PGV_NUMBERS = ['uint32', 'int32', 'uint64', 'int64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64', 'double', 'float'];

/**
 * The protoc-gen-validate rules Envoy enforces when it loads a config (a subset: required messages, repeated and map
 * sizes, string lengths and prefixes, number bounds, enum in/not_in/const, duration bounds); `value` is the JSON as
 * written, undefined when absent (scalars are then checked at their proto3 default, as PGV does).
 */
function checkRules(field: protobuf.Field, value: unknown, path: string): void {
  const rules = rulesOf(field);
  if (!rules) return;
  if (rules.message?.required && value === undefined) fail(path, 'required (validate.rules.message.required)');
  if (field instanceof protobuf.MapField) {
    const n = value === undefined ? 0 : Object.keys(value as object).length;
    if (rules.map?.min_pairs !== undefined && n < rules.map.min_pairs) fail(path, `at least ${rules.map.min_pairs} entries`);
    return;
  }
  if (field.repeated) {
    const list = (value ?? []) as unknown[];
    if (rules.repeated?.min_items !== undefined && list.length < rules.repeated.min_items) fail(path, `at least ${rules.repeated.min_items} item(s) (validate.rules.repeated.min_items)`);
    if (rules.repeated?.max_items !== undefined && list.length > rules.repeated.max_items) fail(path, `at most ${rules.repeated.max_items} item(s)`);
    const items = rules.repeated?.items;
    if (items) list.forEach((v, i) => checkValue(field, items, v, `${path}[${i}]`));
    return;
  }
  checkValue(field, rules, value, path);
}

function checkValue(field: protobuf.Field, rules: Record<string, any>, value: unknown, path: string): void { // eslint-disable-line @typescript-eslint/no-explicit-any
  const t = field.resolvedType;
  const wrapped = t instanceof protobuf.Type ? WRAPPERS[t.fullName] : undefined;
  if (t instanceof protobuf.Type && !wrapped) {
    if (t.fullName === '.google.protobuf.Duration' && rules.duration && typeof value === 'string') {
      const ms = Number(value.slice(0, -1)) * 1000;
      const d = (x: { seconds?: number; nanos?: number }) => (x.seconds ?? 0) * 1000 + (x.nanos ?? 0) / 1e6;
      if (rules.duration.gt && !(ms > d(rules.duration.gt))) fail(path, `must be longer than ${d(rules.duration.gt)} ms`);
      if (rules.duration.gte && !(ms >= d(rules.duration.gte))) fail(path, `must be at least ${d(rules.duration.gte)} ms`);
      if (rules.duration.lt && !(ms < d(rules.duration.lt))) fail(path, `must be shorter than ${d(rules.duration.lt)} ms`);
      if (rules.duration.required && value === undefined) fail(path, 'required');
    }
    if (rules.duration?.required && value === undefined) fail(path, 'required');
    return;
  }
  if (wrapped !== undefined && value === undefined) return; // an absent wrapper is unset: nothing to check
  const kind = wrapped ?? (t instanceof protobuf.Enum ? 'enum' : field.type);
  const r = rules[kind];
  if (!r) return;
  if (kind === 'string') {
    const v = (value ?? '') as string;
    if (r.ignore_empty && v === '') return;
    const len = [...v].length;
    if (r.min_len !== undefined && len < Number(r.min_len)) fail(path, `at least ${r.min_len} character(s) (validate.rules.string.min_len)`);
    if (r.max_len !== undefined && len > Number(r.max_len)) fail(path, `at most ${r.max_len} characters`);
    if (r.min_bytes !== undefined && Buffer.byteLength(v) < Number(r.min_bytes)) fail(path, `at least ${r.min_bytes} byte(s)`);
    if (r.max_bytes !== undefined && Buffer.byteLength(v) > Number(r.max_bytes)) fail(path, `at most ${r.max_bytes} bytes`);
    if (r.prefix !== undefined && !v.startsWith(r.prefix)) fail(path, `must start with "${r.prefix}"`);
    if (Array.isArray(r.in) && !r.in.includes(v)) fail(path, `must be one of ${r.in.join(', ')}`);
    if (r.well_known_regex === 'HTTP_HEADER_NAME' && r.strict !== false && !/^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/.test(v)) fail(path, 'not an HTTP header name');
    return;
  }
  if (kind === 'enum') {
    const t2 = field.resolvedType as protobuf.Enum;
    const n = value === undefined ? 0 : typeof value === 'number' ? value : t2.values[value as string]!;
    if (Array.isArray(r.not_in) && r.not_in.includes(n)) fail(path, `value ${value ?? '(unset)'} is not allowed (validate.rules.enum.not_in)`);
    if (Array.isArray(r.in) && !r.in.includes(n)) fail(path, `value ${value ?? '(unset)'} is not allowed (validate.rules.enum.in)`);
    if (r.const !== undefined && n !== r.const) fail(path, `must be ${r.const}`);
    return;
  }
  if (kind === 'bool') {
    if (r.const !== undefined && (value ?? false) !== r.const) fail(path, `must be ${r.const}`);
    return;
  }
  if (PGV_NUMBERS.includes(kind)) {
    const n = Number(value ?? 0);
    if (r.ignore_empty && n === 0) return;
    if (r.gt !== undefined && !(n > Number(r.gt))) fail(path, `must be greater than ${r.gt} (validate.rules.${kind}.gt)`);
    if (r.gte !== undefined && !(n >= Number(r.gte))) fail(path, `must be at least ${r.gte} (validate.rules.${kind}.gte)`);
    if (r.lt !== undefined && !(n < Number(r.lt))) fail(path, `must be less than ${r.lt}`);
    if (r.lte !== undefined && !(n <= Number(r.lte))) fail(path, `must be at most ${r.lte} (validate.rules.${kind}.lte)`);
    if (r.const !== undefined && n !== Number(r.const)) fail(path, `must be ${r.const}`);
  }
}

function fieldValue(field: protobuf.Field, value: unknown, path: string): unknown {
  if (field instanceof protobuf.MapField) {
    if (!value || typeof value !== 'object' || Array.isArray(value)) fail(path, 'expected a map (object)');
    return Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, single(field, v, `${path}[${k}]`)]));
  }
  if (field.repeated) {
    if (!Array.isArray(value)) fail(path, 'expected a list');
    return value.map((v, i) => single(field, v, `${path}[${i}]`));
  }
  return single(field, value, path);
}

function single(field: protobuf.Field, value: unknown, path: string): unknown {
  const t = field.resolvedType;
  if (t instanceof protobuf.Enum) {
    if (typeof value === 'string') {
      if (!(value in t.values)) fail(path, `"${value}" is not a value of enum ${t.fullName.slice(1)} (${Object.keys(t.values).join(', ')})`);
      return value;
    }
    if (typeof value === 'number' && Object.values(t.values).includes(value)) return value;
    return fail(path, `expected an enum name of ${t.fullName.slice(1)}`);
  }
  if (t instanceof protobuf.Type) return message(t, value, path);
  return scalar(field.type, value, path);
}

function anyMessage(anyType: protobuf.Type, json: unknown, path: string): unknown {
  if (!json || typeof json !== 'object' || Array.isArray(json)) fail(path, 'expected an Any object with "@type"');
  const { '@type': url, ...rest } = json as Record<string, unknown>;
  if (typeof url !== 'string' || !url.includes('/')) fail(`${path}.@type`, 'missing or not a type URL');
  const typeName = url.slice(url.lastIndexOf('/') + 1);
  let inner: protobuf.Type;
  try {
    inner = envoyRoot().lookupType(typeName);
  } catch {
    return fail(`${path}.@type`, `${typeName} is not a message of the loaded proto set`);
  }
  const wkt = inner.fullName.startsWith('.google.protobuf.') && (WRAPPERS[inner.fullName] || ['Duration', 'Timestamp', 'Struct', 'Value', 'ListValue'].some((n) => inner.fullName.endsWith(n)));
  const converted = wkt ? message(inner, rest.value, `${path}.value`) : message(inner, rest, path);
  const problem = inner.verify(inner.fromObject(converted as Record<string, unknown>));
  if (problem) fail(path, `${typeName}: ${problem}`);
  void anyType;
  return { type_url: url, value: inner.encode(inner.fromObject(converted as Record<string, unknown>)).finish() };
}

/** Decodes Envoy JSON as `typeName` (default the Bootstrap); throws EnvoyProtoError naming the path at fault. */
export function decodeEnvoyJson(json: unknown, typeName = 'envoy.config.bootstrap.v3.Bootstrap'): { bytes: Uint8Array; decoded: Record<string, unknown> } {
  const type = envoyRoot().lookupType(typeName);
  const converted = message(type, json, '') as Record<string, unknown>;
  const msg = type.fromObject(converted);
  const problem = type.verify(msg);
  if (problem) throw new EnvoyProtoError(problem);
  const bytes = type.encode(msg).finish();
  const decoded = type.toObject(type.decode(bytes), { enums: String, longs: String }) as Record<string, unknown>;
  return { bytes, decoded };
}
