/// A fixed 64-bit hash of byte strings: the same on every rank, process and run (Swift's `Hasher`
/// is seeded per process, so ranks would disagree). Placement and on-disk formats depend on it:
/// changing it is a format change. Word-at-a-time mixing with MurmurHash3's finaliser.
public enum StableHash {
    @inline(__always)
    static func fmix(_ x: UInt64) -> UInt64 {
        var k = x
        k ^= k >> 33
        k = k &* 0xff51_afd7_ed55_8ccd
        k ^= k >> 33
        k = k &* 0xc4ce_b9fe_1a85_ec53
        k ^= k >> 33
        return k
    }

    @inline(__always)
    static func mixWord(_ h: UInt64, _ w: UInt64) -> UInt64 {
        var k = w &* 0x87c3_7b91_1142_53d5
        k = (k << 31) | (k >> 33)
        k = k &* 0x4cf5_ad43_2745_937f
        let x = h ^ k
        return ((x << 27) | (x >> 37)) &* 5 &+ 0x52dc_e729
    }

    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        let n = bytes.count
        var h = seed ^ 0x9e37_79b9_7f4a_7c15 ^ (UInt64(truncatingIfNeeded: n) &* 0xff51_afd7_ed55_8ccd)
        guard n > 0, let base = bytes.baseAddress else { return fmix(h) }
        var i = 0
        while i + 8 <= n {
            h = mixWord(h, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
            i += 8
        }
        if i < n {
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < n {
                tail |= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) << shift
                shift += 8
                i += 1
            }
            h = mixWord(h, tail)
        }
        return fmix(h)
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }

    public static func hash(_ text: String, seed: UInt64 = 0) -> UInt64 {
        var copy = text
        return copy.withUTF8 { hash(UnsafeRawBufferPointer($0), seed: seed) }
    }
}
