import CPlatform
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
        _ = threadExitRelease
        return lock.withLock {
            defer { cplatform_handles_changed() }
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

    /// Runs `body` with the store behind `kv`, or returns nil if `kv` is not an open handle.
    /// Each thread keeps its last handle (cplatform_handle_cache): while no store was opened or
    /// closed since, a call on it skips the registry's lock, its lazy globals and the object's
    /// reference counting, which were a fifth of a cached local get (perf, docs/benchmarks.md).
    /// The cache holds a reference, so the object outlives a kv_close on another thread; the
    /// closed store then answers KV_EMISUSE, as a call that looked it up just before the close
    /// did, and kv_close has released its memory (Engine.close).
    static func withStore<R>(_ kv: OpaquePointer, _ body: (KeyValueStore) throws -> R) rethrows -> R? {
        let key = UnsafeRawPointer(kv)
        let changes = cplatform_handles_changes()
        if let cached = cplatform_handle_cached(key, changes) {
            return try Unmanaged<Handle>.fromOpaque(cached)._withUnsafeGuaranteedRef { try body($0.store) }
        }
        guard let handle = lookup(kv) else { return nil }
        if let replaced = cplatform_handle_cache(key, Unmanaged.passRetained(handle).toOpaque(), changes) {
            Unmanaged<Handle>.fromOpaque(replaced).release()
        }
        return try body(handle.store)
    }

    /// Drops this thread's cached handle (kv_close: the closing thread lets the store go now).
    static func forgetCached() {
        if let replaced = cplatform_handle_cache(nil, nil, 0) { Unmanaged<Handle>.fromOpaque(replaced).release() }
    }

    /// A thread that exits drops its cached handle's reference; installed before the first handle.
    private static let threadExitRelease: Void = cplatform_handle_cache_set_release { object in
        if let object { Unmanaged<Handle>.fromOpaque(object).release() }
    }

    static func remove(_ kv: OpaquePointer?) -> Handle? {
        lock.withLock {
            guard let slot = decode(kv) else { return nil }
            cplatform_handles_changed()
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
