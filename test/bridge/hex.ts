/** Hex helpers for tests: captures are written as spaced hex, as a logic analyser or a forum post shows them. */
export function fromHex(text: string): Uint8Array {
  const digits = text.replace(/0x/gi, '').replace(/[^0-9a-f]/gi, '');
  if (digits.length % 2 !== 0) throw new Error(`odd number of hex digits in "${text}"`);
  return Uint8Array.from({ length: digits.length / 2 }, (_, index) => parseInt(digits.slice(index * 2, index * 2 + 2), 16));
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join(' ');
}
