@testable import FTKVCore

/// A small, fast, deterministic generator (SplitMix64) so every run sees the same data
/// and a failure can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// A block of random bytes; test keys and values are slices of it at random offsets, so every
/// value has distinct content without generating hundreds of MiB byte by byte.
final class BytePool {
    let bytes: [UInt8]
    init(count: Int, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var b = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var w = rng.next()
            for _ in 0..<8 where i < count {
                b[i] = UInt8(truncatingIfNeeded: w)
                w >>= 8
                i += 1
            }
        }
        bytes = b
    }

    func slice(_ offset: Int, _ length: Int) -> [UInt8] { Array(bytes[offset..<(offset + length)]) }

    /// Does `buffer` hold exactly pool[offset..<offset+length]?
    func matches(_ buffer: UnsafeRawBufferPointer, offset: Int, length: Int) -> Bool {
        guard buffer.count == length else { return false }
        if length == 0 { return true }
        return bytes.withUnsafeBytes { pool in
            memcmp(pool.baseAddress! + offset, buffer.baseAddress!, length) == 0
        }
    }
}

/// A copied-out record, for comparisons.
struct Got: Equatable {
    var value: [UInt8]
    var stamp: Stamp
    var tombstone: Bool
}

extension RecordTable {
    /// What `forEachInWriteOrder` visits: each key's record, how many visits in all, and how
    /// many records came with a hash other than `hashOf` of their key.
    func writeOrderWalk(hashOf: ([UInt8]) -> UInt64 = { StableHash.hash($0) })
        -> (records: [[UInt8]: Got], visits: Int, wrongHashes: Int) {
        var records: [[UInt8]: Got] = [:]
        var visits = 0, wrong = 0
        forEachInWriteOrder { rec in
            let k = Array(rec.key)
            visits += 1
            if rec.hash != hashOf(k) { wrong += 1 }
            records[k] = Got(value: Array(rec.value), stamp: rec.stamp, tombstone: rec.isTombstone)
        }
        return (records, visits, wrong)
    }

    @discardableResult
    func put(_ key: [UInt8], _ value: [UInt8], stamp: Stamp = .zero, tombstone: Bool = false,
             onlyIfNewer: Bool = false, hash: UInt64? = nil) throws -> Bool {
        try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { v in
                try upsert(k, hash: hash ?? StableHash.hash(k), value: v, stamp: stamp,
                           tombstone: tombstone, onlyIfNewer: onlyIfNewer)
            }
        }
    }

    /// `appendDeferred` of arrays (a writer's pending table).
    func putDeferred(_ key: [UInt8], _ value: [UInt8], stamp: Stamp, tombstone: Bool = false) throws {
        try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { v in
                try appendDeferred(k, value: v, stamp: stamp, tombstone: tombstone)
            }
        }
    }

    func get(_ key: [UInt8], hash: UInt64? = nil) -> Got? {
        key.withUnsafeBytes { k in
            find(k, hash: hash ?? StableHash.hash(k)).map {
                Got(value: Array($0.value), stamp: $0.stamp, tombstone: $0.isTombstone)
            }
        }
    }

    /// Address of key's stored record (to observe in-place writes and compaction).
    func recordAddress(_ key: [UInt8]) -> Int? {
        key.withUnsafeBytes { k in
            find(k, hash: StableHash.hash(k)).map { Int(bitPattern: $0.key.baseAddress!) }
        }
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

#if canImport(Glibc)
import Glibc
#endif
