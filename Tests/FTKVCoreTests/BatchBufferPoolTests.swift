import Testing
@testable import FTKVCore

@Suite("BatchBufferPool")
struct BatchBufferPoolTests {
    @Test("a message's buffer goes back to the pool when freed, and the next batch reuses it")
    func reuse() throws {
        let pool = BatchBufferPool(bufferBytes: 1 << 16, keep: 2)
        var w = try ByteWriter(pooled: pool)
        let first = w.base
        try w.append(UInt64(42))
        var m: MessageBuffer? = try w.finish()
        #expect(m?.count == 8)
        #expect(pool.idleCount == 0)
        m = nil
        #expect(pool.idleCount == 1)
        let again = try ByteWriter(pooled: pool)
        #expect(again.base == first)
        again.release()
        #expect(pool.allocated == 1)
        // Received messages take pooled buffers the same way.
        var r = MessageBuffer(pool: pool)
        #expect(r?.base == first)
        r = nil
        #expect(pool.idleCount == 1 && pool.allocated == 1)
        #expect(pool.fits(1 << 16) && pool.fits((1 << 15) + 1) && !pool.fits(1 << 15) && !pool.fits((1 << 16) + 1))
    }

    @Test("at most `keep` buffers stay idle; a writer that outgrew its buffer frees it instead")
    func bounded() throws {
        let pool = BatchBufferPool(bufferBytes: 4096, keep: 2)
        var held = (0..<5).compactMap { _ in MessageBuffer(pool: pool) }
        #expect(held.count == 5 && pool.allocated == 5)
        held.removeAll()
        #expect(pool.idleCount == 2)
        var w = try ByteWriter(pooled: pool)
        let bytes = [UInt8](repeating: 7, count: 10_000)
        try bytes.withUnsafeBytes { try w.append($0) } // past 4096: reallocated, no longer pooled
        var m: MessageBuffer? = try w.finish()
        #expect(m?.count == 10_000 && m?.bytes.allSatisfy { $0 == 7 } == true)
        m = nil
        #expect(pool.idleCount == 1) // the grown buffer went to free(), not back to the pool
    }
}
