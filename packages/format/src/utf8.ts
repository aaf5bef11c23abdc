/**
 * UTF-8 through the WHATWG Encoding API. TextEncoder/TextDecoder exist in every runtime we target (Node,
 * browsers, web workers, Deno, Bun), but their TypeScript types live in lib.dom or @types/node, and this
 * package deliberately compiles against neither (it must run anywhere). So we declare, module-locally, the
 * two members we use; at run time the names resolve to the runtime's globals.
 */
declare const TextEncoder: new () => { encode(input: string): Uint8Array<ArrayBuffer> };
declare const TextDecoder: new (label: 'utf-8', options: { fatal: boolean }) => { decode(input: Uint8Array): string };

const encoder = new TextEncoder();
// fatal: malformed UTF-8 throws instead of silently becoming U+FFFD (a header must be valid UTF-8).
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

export function encodeUtf8(s: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(s);
}

/** Decode strictly; returns undefined when the bytes are not valid UTF-8. */
export function decodeUtf8Strict(bytes: Uint8Array): string | undefined {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return undefined;
  }
}
