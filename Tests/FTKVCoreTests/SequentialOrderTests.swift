import Testing
@testable import FTKVCore

@Suite("Sequential order")
struct SequentialOrderTests {
    @Test("the primary's ordered stamps increase across writers and intervals, whatever the writer's rank")
    func orderedStamps() throws {
        let table = RecordTable()
        let k = Array("k".utf8)
        try k.withUnsafeBytes { kb in
            let h = StableHash.hash(kb)
            var last = Stamp.zero
            // Higher ranks first: with writer-rank stamps the later, lower-rank writes would lose.
            for (i, writer) in [UInt32(3), 0, 2, 0, 1].enumerated() {
                let interval = UInt64(1 + i / 2)
                let st = table.orderedStamp(kb, hash: h, interval: interval, writer: writer)
                #expect(st > last)
                let applied = try table.upsert(kb, hash: h, value: UnsafeRawBufferPointer(start: nil, count: 0), stamp: st,
                                               tombstone: false, onlyIfNewer: true)
                #expect(applied)
                last = st
            }
        }
    }
}
