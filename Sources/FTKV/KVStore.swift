import CMPI
import Glibc
@_exported import struct FTKVCore.StoreConfig
import FTKVCore

/// A failed store call. `code` matches the C result codes of include/ftkv.h.
public struct KVError: Error, Equatable, CustomStringConvertible {
    public enum Code: Int32, Sendable {
        case notFound = -1, tooSmall = -2, invalid = -3, misuse = -4, noMemory = -5
        case io = -6, mpi = -7, timedOut = -8, `internal` = -9, remote = -10
        /// Every stored copy of some committed data is missing or damaged (open).
        case dataLoss = -11
        /// Ranks failed and the store moved to a view without them (the call did not complete:
        /// retry it), or every holder of a key failed. See include/ftkv.h, "Failures".
        case procFailed = -12
        /// The server refused this client job: wrong or missing secret (KVStore.connect).
        case denied = -13
        /// No store server at that port or service name (KVStore.connect).
        case noServer = -14
    }
    public let code: Code
    public let message: String

    public var description: String { "KVError.\(code) (\(code.rawValue)): \(message)" }

    init(_ failure: KVFailure) {
        code = Code(rawValue: failure.code.rawValue) ?? .internal
        message = failure.message
    }
}

/// An MPI communicator for `KVStore.open`.
public struct Communicator {
    public let handle: MPIComm
    public init(_ handle: MPIComm) { self.handle = handle }
    public static var world: Communicator { Communicator(cmpi_comm_world()) }
    public static var selfOnly: Communicator { Communicator(cmpi_comm_self()) }
}

/// A distributed, replicated key-value store over an MPI communicator: the same engine and
/// semantics as the C API (include/ftkv.h), for Swift code.
///
///     let store = try KVStore(name: "heat")           // collective
///     try store.put("u/17", bytes)                     // local; visible to all after fence()
///     try store.fence()                                // collective
///     let back = try store.get("u/17")                 // [UInt8]? (nil: not found)
///     try store.close()                                // collective
///
/// Call `close()` on every rank. A store dropped without it stays open (other ranks may still
/// need its data) and keeps serving until MPI_Finalize, which stops it.
public final class KVStore {
    /// The store behind this handle: embedded (init) or a server's (connect).
    private let engine: KeyValueStore

    /// Opens (creates) the store `name` on `communicator`. Collective. `options` takes the
    /// ftkv_* keys of docs/configuration.md; FTKV_* environment variables override them.
    public init(communicator: Communicator = .world, name: String, options: [String: String] = [:]) throws {
        do {
            engine = try Engine.open(comm: communicator.handle, name: name, options: options)
        } catch let f as KVFailure {
            throw KVError(f)
        }
    }

    private init(connected: KeyValueStore) { engine = connected }

    /// Connects this job to a store server (`ftkv serve`), as kv_connect: `address` is
    /// "file:PORTFILE", a port name or a published service name. Collective over `communicator`.
    /// Options: ftkv_secret, ftkv_timeout (docs/client-server.md).
    public static func connect(to address: String, communicator: Communicator = .world,
                               options: [String: String] = [:]) throws -> KVStore {
        do {
            return KVStore(connected: try RemoteStore.connect(to: address, comm: communicator.handle, options: options))
        } catch let f as KVFailure {
            throw KVError(f)
        }
    }

    private func call<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let f as KVFailure {
            throw KVError(f)
        }
    }

    // MARK: bytes in, bytes out

    public func put<K: ContiguousBytes, V: ContiguousBytes>(_ key: K, _ value: V) throws {
        try call { try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try engine.put(key: k, value: v) } } }
    }

    public func put<V: ContiguousBytes>(_ key: String, _ value: V) throws {
        try put(Array(key.utf8), value)
    }

    /// The value, or nil when the key has none.
    public func get<K: ContiguousBytes>(_ key: K) throws -> [UInt8]? {
        try call {
            try key.withUnsafeBytes { k -> [UInt8]? in
                switch try engine.get(key: k, into: nil) {
                case .notFound: return nil
                case .found(let length), .tooSmall(let length):
                    // Another rank may change the value between measuring and reading: retry then.
                    var size = length
                    while true {
                        // A Swift array that cannot be allocated traps: ask malloc first, so a
                        // length this process cannot hold is KVError.noMemory instead.
                        guard let probe = malloc(max(size, 1)) else {
                            throw KVFailure(.noMemory, "cannot allocate \(size) bytes for the value")
                        }
                        free(probe)
                        var out = [UInt8](repeating: 0, count: size)
                        let outcome = try out.withUnsafeMutableBytes { try engine.get(key: k, into: $0) }
                        switch outcome {
                        case .notFound: return nil
                        case .found(let n): return Array(out.prefix(n))
                        case .tooSmall(let n): size = n
                        }
                    }
                }
            }
        }
    }

    public func get(_ key: String) throws -> [UInt8]? { try get(Array(key.utf8)) }

    /// Reads into `buffer` without allocating; see GetOutcome.
    public func get(key: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer?) throws -> GetOutcome {
        try call { try engine.get(key: key, into: buffer) }
    }

    /// Writes without copying into Swift arrays first.
    public func put(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws {
        try call { try engine.put(key: key, value: value) }
    }

    public func del<K: ContiguousBytes>(_ key: K) throws {
        try call { try key.withUnsafeBytes { try engine.del(key: $0) } }
    }

    public func del(_ key: String) throws { try del(Array(key.utf8)) }

    /// Collective: every earlier put/del of every rank becomes visible on every rank.
    /// Compare-and-swap (kv_cas): if the key's value is `expected` (nil: it has none), make it
    /// `desired` (nil: delete it). Returns whether it did. Linearizable across ranks.
    public func compareAndSwap(_ key: String, expected: [UInt8]?, desired: [UInt8]?) throws -> Bool {
        try call {
            try Array(key.utf8).withUnsafeBytes { k in
                try Engine.withOptionalBytes(expected) { e in
                    try Engine.withOptionalBytes(desired) { d in
                        try engine.compareAndSwap(key: k, expected: e, desired: d)
                    }
                }
            }
        }
    }

    public func fence() throws { try call { try engine.fence() } }

    /// Collective: a fence, then every rank's data is written durably as a new version, which a
    /// later open (on any number of ranks) loads. Returns the version number.
    @discardableResult
    public func commit() throws -> UInt64 { try call { try engine.commit() } }

    /// Local: whether `version` is complete in the second tier (ftkv_flush_dir); throws when this
    /// rank's copy failed (KV_EIO) or was skipped for a newer version (KV_ENOTFOUND).
    public func flushed(_ version: UInt64) throws -> Bool { try call { try engine.flushed(version) } }

    /// Collective: flushes and releases the store.
    public func close() throws { try call { try engine.close() } }

    /// Ranks holding the key, primary first.
    public func locate(key: UnsafeRawBufferPointer) throws -> [Int32] {
        try call { try engine.locate(key: key) }
    }

    public func locate(_ key: String) throws -> [Int32] {
        try call { try Array(key.utf8).withUnsafeBytes { try engine.locate(key: $0) } }
    }

    public func stat(_ what: StatKind) throws -> UInt64 { try call { try engine.stat(what) } }

    /// Ranks (of the communicator given at open) known to have failed, ascending (kv_failed).
    public func failed() throws -> [Int32] { try call { try engine.failed() } }

    /// The live members' communicator (kv_comm): the one given at open until a member fails,
    /// then the survivors'. Owned by the store; valid until close.
    public func communicator() throws -> Communicator { try call { Communicator(try engine.communicator()) } }
}

@_exported import enum FTKVCore.GetOutcome
@_exported import enum FTKVCore.StatKind

/// Bytes a KVStore can take as keys and values.
public protocol ContiguousBytes {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}
extension Array: ContiguousBytes where Element == UInt8 {}
extension ArraySlice: ContiguousBytes where Element == UInt8 {}
extension ContiguousArray: ContiguousBytes where Element == UInt8 {}
