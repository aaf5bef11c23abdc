/**
 * Build safetensors files byte by byte for tests, independently of the writer under test:
 * an 8-byte little-endian length, the header bytes exactly as given, then the data.
 */
export function rawSafetensors(
  header: string | Uint8Array,
  data: Uint8Array = new Uint8Array(),
  declaredLength?: bigint,
): Uint8Array<ArrayBuffer> {
  const json = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

/** One header entry as JSON text. */
export function entry(name: string, dtype: string, shape: unknown, offsets: unknown): string {
  return `${JSON.stringify(name)}:{"dtype":${JSON.stringify(dtype)},"shape":${JSON.stringify(shape)},"data_offsets":${JSON.stringify(offsets)}}`;
}

/** A header object from entries. */
export function header(...entries: string[]): string {
  return `{${entries.join(',')}}`;
}

/** Little-endian bytes of float32 values. */
export function f32Bytes(...values: number[]): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Float32Array(values).buffer);
}
