import FTKVCore
import Glibc

/// One kv_store handle: the store behind it (embedded, kv_open; or a server's, kv_connect).
final class Handle {
    let store: KeyValueStore

    init(store: KeyValueStore) { self.store = store }
}

/// kv_store pointers are not addresses: they encode a registry slot, a generation and a marker,
/// so a closed (or never valid) handle is recognised and reported as KV_EMISUSE instead of being
/// dereferenced. The marker keeps encoded values far above any user-space address.
enum Handles {
    private static let lock = FTKVLock()
    private static var slots: [Handle?] = []
    private static var generations: [UInt32] = []
    private static var freeSlots: [Int] = []
    private static let marker: UInt = 0x6B76 << 48 // "kv"
    private static let slotBits: UInt = 24

    static func insert(_ store: KeyValueStore) -> OpaquePointer? {
        lock.withLock {
            let slot: Int
            if let reused = freeSlots.popLast() {
                slot = reused
            } else {
                guard slots.count < (1 << 24) - 2 else { return nil }
                slots.append(nil)
                generations.append(0)
                slot = slots.count - 1
            }
            generations[slot] = (generations[slot] &+ 1) & 0xFF_FFFF
            slots[slot] = Handle(store: store)
            let bits = marker | (UInt(generations[slot]) << slotBits) | UInt(slot + 1)
            return OpaquePointer(bitPattern: bits)
        }
    }

    private static func decode(_ kv: OpaquePointer?) -> Int? {
        guard let kv else { return nil }
        let bits = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(kv)))
        guard bits & (0xFFFF << 48) == marker else { return nil }
        let slot = Int(bits & ((1 << slotBits) - 1)) - 1
        let generation = UInt32((bits >> slotBits) & 0xFF_FFFF)
        guard slot >= 0, slot < slots.count, generations[slot] == generation, slots[slot] != nil else { return nil }
        return slot
    }

    static func lookup(_ kv: OpaquePointer?) -> Handle? {
        lock.withLock { decode(kv).flatMap { slots[$0] } }
    }

    static func remove(_ kv: OpaquePointer?) -> Handle? {
        lock.withLock {
            guard let slot = decode(kv) else { return nil }
            let handle = slots[slot]
            slots[slot] = nil
            freeSlots.append(slot)
            return handle
        }
    }
}

/// Messages for kv_errmsg, kept per thread: a failure on one thread never overwrites the message
/// another thread is about to read. Per handle (by its encoded value), and one for calls without
/// a valid handle. Freed when the thread exits.
enum ErrorText {
    static let empty: UnsafeMutablePointer<CChar> = strdup("")

    private final class ThreadMessages {
        var perHandle: [UInt: UnsafeMutablePointer<CChar>] = [:]
        var global: UnsafeMutablePointer<CChar>?
        deinit {
            for p in perHandle.values { free(p) }
            free(global)
        }
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { raw in
            if let raw { Unmanaged<ThreadMessages>.fromOpaque(raw).release() }
        }
        return key
    }()

    private static var mine: ThreadMessages {
        if let raw = pthread_getspecific(key) { return Unmanaged<ThreadMessages>.fromOpaque(raw).takeUnretainedValue() }
        let messages = ThreadMessages()
        pthread_setspecific(key, Unmanaged.passRetained(messages).toOpaque())
        return messages
    }

    private static func bits(_ kv: OpaquePointer) -> UInt { UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(kv))) }

    static func setGlobal(_ message: String) {
        let m = mine
        free(m.global)
        m.global = strdup(message)
    }

    static func globalText() -> UnsafePointer<CChar> { UnsafePointer(mine.global ?? empty) }

    static func set(_ kv: OpaquePointer, _ message: String) {
        let m = mine
        let k = bits(kv)
        free(m.perHandle[k])
        m.perHandle[k] = strdup(message)
        // Handles closed since stay in the map until the thread exits: bound it.
        if m.perHandle.count > 64 {
            for (other, text) in m.perHandle where other != k && Handles.lookup(OpaquePointer(bitPattern: other)) == nil {
                free(text)
                m.perHandle[other] = nil
            }
        }
    }

    static func text(of kv: OpaquePointer) -> UnsafePointer<CChar> { UnsafePointer(mine.perHandle[bits(kv)] ?? empty) }
}

/// Static C strings for kv_strerror / kv_version: allocated once, never freed.
enum StaticText {
    static let codes: [Int32: UnsafeMutablePointer<CChar>] = {
        var table: [Int32: UnsafeMutablePointer<CChar>] = [:]
        for code in KVCode.allCases { table[code.rawValue] = strdup("\(code.text)") }
        return table
    }()
    static let unknownCode: UnsafeMutablePointer<CChar> = strdup("unknown libftkv result code")
    static let version: UnsafeMutablePointer<CChar> = strdup(LibraryVersion.string)
}
