import CFTKV
import CMPI
import FTKVCore
import Glibc

// The C entry points of include/ftkv.h and nothing else: check arguments, map handles to
// stores, and turn every failure into a result code. Nothing may trap or throw across this
// boundary: a Swift trap would kill the application's whole MPI job.

/// Runs `body` on the store behind `kv`, mapping failures to codes and kv_errmsg text.
@inline(__always)
private func withStore(_ kv: OpaquePointer?, _ body: (KeyValueStore) throws -> Int32) -> Int32 {
    let result = kv.flatMap { kv in
        Handles.withStore(kv) { store -> Int32 in
            do {
                return try body(store)
            } catch let failure as KVFailure {
                ErrorText.set(kv, failure.message)
                return failure.code.rawValue
            } catch {
                ErrorText.set(kv, "unexpected error: \(error)")
                return KVCode.internal.rawValue
            }
        }
    }
    guard let result else {
        let what = kv == nil ? "the kv_store handle is NULL" : "the kv_store handle is not open (closed, or never returned by kv_open)"
        ErrorText.setGlobal(what)
        return KVCode.misuse.rawValue
    }
    return result
}

/// Runs a call that has no (more) handle to report on: failures go to kv_errmsg(NULL).
private func reportingGlobally(_ call: String, _ body: () throws -> Int32) -> Int32 {
    do {
        return try body()
    } catch let failure as KVFailure {
        ErrorText.setGlobal("\(call): \(failure.message)")
        return failure.code.rawValue
    } catch {
        ErrorText.setGlobal("\(call): unexpected error: \(error)")
        return KVCode.internal.rawValue
    }
}

// What only the C side can get wrong: NULL pointers, and a size_t beyond Int.max (it arrives
// negative, and a negative count would trap). The length limits are the engine's (checkKey,
// checkValue), shared with the Swift API; the buffers are not read before those checks.
private func keyBuffer(_ key: UnsafeRawPointer?, _ keylen: Int) throws -> UnsafeRawBufferPointer {
    guard let key else { throw KVFailure(.invalid, "key is NULL") }
    guard keylen >= 0 else { throw KVFailure(.invalid, "key length exceeds the limit of \(Engine.maxKeyLength) bytes") }
    return UnsafeRawBufferPointer(start: key, count: keylen)
}

private func valueBuffer(_ value: UnsafeRawPointer?, _ valuelen: Int) throws -> UnsafeRawBufferPointer {
    guard valuelen >= 0 else { throw KVFailure(.invalid, "value length exceeds the limit of \(Engine.maxValueLength) bytes") }
    guard value != nil || valuelen == 0 else { throw KVFailure(.invalid, "value is NULL but its length is \(valuelen)") }
    return UnsafeRawBufferPointer(start: valuelen == 0 ? nil : value, count: valuelen)
}

/// kv_open and kv_connect: the store `make` returns becomes a handle in *kv (NULL on failure).
private func handOut(_ call: String, _ kv: UnsafeMutablePointer<OpaquePointer?>?,
                     _ make: () throws -> KeyValueStore) -> Int32 {
    guard let kv else {
        ErrorText.setGlobal("\(call): the kv_store** argument is NULL")
        return KVCode.misuse.rawValue
    }
    kv.pointee = nil
    return reportingGlobally(call) {
        let store = try make()
        guard let handle = Handles.insert(store) else {
            try? store.close()
            throw KVFailure(.noMemory, "too many open stores in this process")
        }
        kv.pointee = handle
        return KVCode.ok.rawValue
    }
}

private func open(_ comm: () -> MPI_Comm?, _ name: () -> String?, _ info: () -> MPI_Info?,
                  _ kv: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    handOut("kv_open", kv) { try Engine.open(comm: comm, name: name(), info: info) }
}

@c @implementation
public func kv_open(_ comm: MPI_Comm?, _ name: UnsafePointer<CChar>?, _ info: MPI_Info?,
                    _ kv: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    open({ comm }, { name.map { String(cString: $0) } }, { info }, kv)
}

@c @implementation
public func kv_open_f(_ comm: Int32, _ name: UnsafePointer<CChar>?, _ namelen: Int, _ info: Int32,
                      _ kv: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    open({ cmpi_comm_f2c(comm) }, {
        guard let name, namelen >= 0, namelen <= 4096 else { return nil }
        let bytes = UnsafeRawBufferPointer(start: name, count: namelen)
        // Fortran strings are blank-padded.
        return String(decoding: bytes, as: UTF8.self).trimmingSpaces
    }, { cmpi_info_f2c(info) }, kv)
}

@c @implementation
public func kv_connect(_ port: UnsafePointer<CChar>?, _ comm: MPI_Comm?, _ info: MPI_Info?,
                       _ kv: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    handOut("kv_connect", kv) { try RemoteStore.connect(to: port.map { String(cString: $0) }, comm: { comm }, info: { info }) }
}

@c @implementation
public func kv_connect_f(_ port: UnsafePointer<CChar>?, _ portlen: Int, _ comm: Int32, _ info: Int32,
                         _ kv: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    handOut("kv_connect", kv) {
        let address: String? = port.flatMap { p in
            guard portlen >= 0, portlen <= 4096 else { return nil }
            // Fortran strings are blank-padded.
            return String(decoding: UnsafeRawBufferPointer(start: p, count: portlen), as: UTF8.self).trimmingSpaces
        }
        return try RemoteStore.connect(to: address, comm: { cmpi_comm_f2c(comm) }, info: { cmpi_info_f2c(info) })
    }
}

@c @implementation
public func kv_close(_ kv: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let kv, let value = kv.pointee else { return KVCode.ok.rawValue }
    kv.pointee = nil
    guard let handle = Handles.remove(value) else {
        ErrorText.setGlobal("kv_close: the kv_store handle is not open (closed twice?)")
        return KVCode.misuse.rawValue
    }
    Handles.forgetCached()
    return reportingGlobally("kv_close") {
        try handle.store.close()
        return KVCode.ok.rawValue
    }
}

@c @implementation
public func kv_put(_ kv: OpaquePointer?, _ key: UnsafeRawPointer?, _ keylen: Int,
                   _ value: UnsafeRawPointer?, _ valuelen: Int) -> Int32 {
    withStore(kv) { store in
        try store.put(key: try keyBuffer(key, keylen), value: try valueBuffer(value, valuelen))
        return KVCode.ok.rawValue
    }
}

@c @implementation
public func kv_get(_ kv: OpaquePointer?, _ key: UnsafeRawPointer?, _ keylen: Int,
                   _ buf: UnsafeMutableRawPointer?, _ bufsize: Int, _ valuelen: UnsafeMutablePointer<Int>?) -> Int32 {
    valuelen?.pointee = 0
    return withStore(kv) { store in
        let k = try keyBuffer(key, keylen)
        // bufsize beyond Int.max (negative here) cannot be a real buffer: treat as "huge".
        let buffer = buf.map { UnsafeMutableRawBufferPointer(start: $0, count: bufsize < 0 ? Int.max : bufsize) }
        switch try store.get(key: k, into: buffer) {
        case .found(let length):
            valuelen?.pointee = length
            return KVCode.ok.rawValue
        case .tooSmall(let length):
            valuelen?.pointee = length
            throw KVFailure(.tooSmall, "value of \(length) bytes does not fit the \(bufsize)-byte buffer")
        case .notFound:
            return KVCode.notFound.rawValue
        }
    }
}

@c @implementation
public func kv_del(_ kv: OpaquePointer?, _ key: UnsafeRawPointer?, _ keylen: Int) -> Int32 {
    withStore(kv) { store in
        try store.del(key: try keyBuffer(key, keylen))
        return KVCode.ok.rawValue
    }
}

/// kv_cas's expected and desired values: NULL (with length 0) is "no value", which an empty
/// value is not.
private func optionalValue(_ value: UnsafeRawPointer?, _ valuelen: Int, _ what: String) throws -> UnsafeRawBufferPointer? {
    guard let value else {
        guard valuelen == 0 else { throw KVFailure(.invalid, "\(what) is NULL but its length is \(valuelen)") }
        return nil
    }
    guard valuelen >= 0 else { throw KVFailure(.invalid, "\(what) length exceeds the limit of \(Engine.maxValueLength) bytes") }
    return UnsafeRawBufferPointer(start: value, count: valuelen)
}

@c @implementation
public func kv_cas(_ kv: OpaquePointer?, _ key: UnsafeRawPointer?, _ keylen: Int,
                   _ expected: UnsafeRawPointer?, _ expectedlen: Int, _ desired: UnsafeRawPointer?, _ desiredlen: Int,
                   _ swapped: UnsafeMutablePointer<Int32>?) -> Int32 {
    swapped?.pointee = 0
    return withStore(kv) { store in
        guard let swapped else { throw KVFailure(.invalid, "swapped is NULL") }
        let done = try store.compareAndSwap(key: try keyBuffer(key, keylen),
                                             expected: try optionalValue(expected, expectedlen, "expected value"),
                                             desired: try optionalValue(desired, desiredlen, "desired value"))
        swapped.pointee = done ? 1 : 0
        return KVCode.ok.rawValue
    }
}

@c @implementation
public func kv_fence(_ kv: OpaquePointer?) -> Int32 {
    withStore(kv) { store in
        try store.fence()
        return KVCode.ok.rawValue
    }
}

@c @implementation
public func kv_commit(_ kv: OpaquePointer?, _ version: UnsafeMutablePointer<UInt64>?) -> Int32 {
    withStore(kv) { store in
        let v = try store.commit()
        version?.pointee = v
        return KVCode.ok.rawValue
    }
}

@c @implementation
public func kv_flush_status(_ kv: OpaquePointer?, _ version: UInt64, _ flushed: UnsafeMutablePointer<Int32>?) -> Int32 {
    withStore(kv) { store in
        guard let flushed else { throw KVFailure(.invalid, "flushed is NULL") }
        flushed.pointee = 0
        flushed.pointee = try store.flushed(version) ? 1 : 0
        return KVCode.ok.rawValue
    }
}

@c @implementation
public func kv_failed(_ kv: OpaquePointer?, _ ranks: UnsafeMutablePointer<Int32>?, _ maxranks: Int32,
                      _ count: UnsafeMutablePointer<Int32>?) -> Int32 {
    withStore(kv) { store in
        guard let count else { throw KVFailure(.invalid, "count is NULL") }
        guard maxranks >= 0, ranks != nil || maxranks == 0 else { throw KVFailure(.invalid, "ranks is NULL but maxranks is \(maxranks)") }
        let failed = try store.failed()
        for (i, r) in failed.prefix(Int(maxranks)).enumerated() { ranks![i] = r }
        count.pointee = Int32(failed.count)
        return KVCode.ok.rawValue
    }
}

@c @implementation
public func kv_comm(_ kv: OpaquePointer?, _ comm: UnsafeMutablePointer<MPI_Comm?>?) -> Int32 {
    withStore(kv) { store in
        guard let comm else { throw KVFailure(.invalid, "comm is NULL") }
        comm.pointee = try store.communicator()
        return KVCode.ok.rawValue
    }
}

@c @implementation
public func kv_comm_f(_ kv: OpaquePointer?, _ comm: UnsafeMutablePointer<Int32>?) -> Int32 {
    withStore(kv) { store in
        guard let comm else { throw KVFailure(.invalid, "comm is NULL") }
        comm.pointee = cmpi_comm_c2f(try store.communicator())
        return KVCode.ok.rawValue
    }
}

@c @implementation
public func kv_locate(_ kv: OpaquePointer?, _ key: UnsafeRawPointer?, _ keylen: Int,
                      _ ranks: UnsafeMutablePointer<Int32>?, _ maxranks: Int32, _ nranks: UnsafeMutablePointer<Int32>?) -> Int32 {
    withStore(kv) { store in
        guard let nranks else { throw KVFailure(.invalid, "nranks is NULL") }
        guard maxranks >= 0, maxranks == 0 || ranks != nil else {
            throw KVFailure(.invalid, "ranks is NULL or maxranks is negative")
        }
        let located = try store.locate(key: try keyBuffer(key, keylen))
        for (i, r) in located.prefix(Int(maxranks)).enumerated() { ranks![i] = r }
        nranks.pointee = Int32(located.count)
        return KVCode.ok.rawValue
    }
}

@c @implementation
public func kv_stat(_ kv: OpaquePointer?, _ what: Int32, _ value: UnsafeMutablePointer<UInt64>?) -> Int32 {
    withStore(kv) { store in
        guard let value else { throw KVFailure(.invalid, "value is NULL") }
        guard let kind = StatKind(rawValue: what) else { throw KVFailure(.invalid, "unknown statistic \(what)") }
        value.pointee = try store.stat(kind)
        return KVCode.ok.rawValue
    }
}

@c @implementation
public func kv_strerror(_ code: Int32) -> UnsafePointer<CChar>? {
    UnsafePointer(StaticText.codes[code] ?? StaticText.unknownCode)
}

@c @implementation
public func kv_errmsg(_ kv: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard let kv, Handles.lookup(kv) != nil else { return ErrorText.globalText() }
    return ErrorText.text(of: kv)
}

@c @implementation
public func kv_version(_ major: UnsafeMutablePointer<Int32>?, _ minor: UnsafeMutablePointer<Int32>?,
                       _ patch: UnsafeMutablePointer<Int32>?) -> UnsafePointer<CChar>? {
    major?.pointee = LibraryVersion.major
    minor?.pointee = LibraryVersion.minor
    patch?.pointee = LibraryVersion.patch
    return UnsafePointer(StaticText.version)
}
