import FTKVCore
import Glibc

/// One kv_store handle: the engine plus the text kv_errmsg returns for it.
final class Handle {
    let engine: Engine
    var errorText: UnsafeMutablePointer<CChar>?

    init(engine: Engine) { self.engine = engine }

    deinit { free(errorText) }
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

    static func insert(_ engine: Engine) -> OpaquePointer? {
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
            slots[slot] = Handle(engine: engine)
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

/// Messages for kv_errmsg: per handle, and one for calls without a valid handle.
enum ErrorText {
    private static let lock = FTKVLock()
    private static var global: UnsafeMutablePointer<CChar>?
    static let empty: UnsafeMutablePointer<CChar> = strdup("")

    static func setGlobal(_ message: String) {
        lock.withLock {
            free(global)
            global = strdup(message)
        }
    }

    static func globalText() -> UnsafePointer<CChar> {
        lock.withLock { UnsafePointer(global ?? empty) }
    }

    static func set(_ handle: Handle, _ message: String) {
        lock.withLock {
            free(handle.errorText)
            handle.errorText = strdup(message)
        }
    }

    static func text(of handle: Handle) -> UnsafePointer<CChar> {
        lock.withLock { UnsafePointer(handle.errorText ?? empty) }
    }
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
