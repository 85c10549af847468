/**
 * u64 fields as `number` when exact (≤ 2^53 - 1) and `bigint` beyond, so ids that are small in
 * practice (node ids, uniques, offsets) cost no bigint allocation on the request path.
 */

const TWO_32 = 0x1_0000_0000;
/** High word of Number.MAX_SAFE_INTEGER: values with a larger high word need a bigint. */
const MAX_SAFE_HIGH = 0x1f_ffff;

export function readU64(buf: Buffer, offset: number): number | bigint {
  const low = buf.readUInt32LE(offset);
  const high = buf.readUInt32LE(offset + 4);
  if (high <= MAX_SAFE_HIGH) return high * TWO_32 + low;
  return (BigInt(high) << 32n) | BigInt(low);
}

/** The same normalisation for values the filesystem hands us (1n and 1 must be one key). */
export function normalizeU64(value: number | bigint): number | bigint {
  if (typeof value === 'number') return value;
  return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= 0n ? Number(value) : value;
}

export function writeU64(buf: Buffer, offset: number, value: number | bigint): void {
  if (typeof value === 'bigint') {
    if (value < 0n || value >= 1n << 64n) throw new RangeError(`u64 out of range: ${value}`);
    buf.writeBigUInt64LE(value, offset);
    return;
  }
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`u64 out of range: ${value}`);
  buf.writeUInt32LE(value % TWO_32, offset);
  buf.writeUInt32LE(Math.floor(value / TWO_32), offset + 4);
}

/** Seconds before 1970 are negative: the kernel reads time fields as s64. */
export function writeI64(buf: Buffer, offset: number, value: number): void {
  if (value >= 0) writeU64(buf, offset, value);
  else buf.writeBigInt64LE(BigInt(value), offset);
}
