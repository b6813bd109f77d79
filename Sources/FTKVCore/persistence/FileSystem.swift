import CPlatform
import Glibc

/// The POSIX calls persistence makes, each turning errno into a KV_EIO failure that names the
/// path and the reason ("No space left on device", "Permission denied", ...). Nothing here traps.
public enum FileSystem {
    static func failure(_ what: String, _ path: String, errno code: Int32 = errno) -> KVFailure {
        KVFailure(.io, "\(what) '\(path)': \(String(cString: strerror(code)))")
    }

    /// Creates `path` and its missing parents (mkdir -p); each new directory's parent is
    /// fsynced so the directory survives a crash.
    public static func makeDirectories(_ path: String) throws {
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw failure("cannot use as a directory", path, errno: ENOTDIR) }
            return
        }
        let parent = parentDirectory(path)
        if parent != path { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw failure("cannot create directory", path) }
        try syncDirectory(parent)
    }

    static func parentDirectory(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        return slash == p.startIndex ? "/" : String(p[..<slash])
    }

    /// fsync of a directory: makes the names created, renamed or removed in it durable.
    public static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open directory", path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure("cannot fsync directory", path) }
    }

    /// Names in a directory (without "." and ".."); nil when it does not exist or cannot be read.
    public static func list(_ path: String) -> [String]? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The size of a regular file, or nil if there is none at `path`.
    public static func fileSize(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int(st.st_size)
    }

    /// (device, inode) of a directory: ranks that see the same pair share the directory.
    public static func identity(_ path: String) -> (UInt64, UInt64)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// Writes `bytes` to `path` via a temporary name: readers see the old file or the new one,
    /// never a part. `mode`: the new file's permissions (0600 for a file holding a secret).
    public static func writeAtomically(_ bytes: [UInt8], to path: String, temporarySuffix: String, mode: mode_t = 0o644) throws {
        try replaceAtomically(path, temporarySuffix: temporarySuffix, mode: mode) { fd, tmp in
            try bytes.withUnsafeBytes { try writeAll(fd, $0, path: tmp) }
        }
    }

    /// Copies the whole file open at `source` to `path` via a temporary name: a reader sees the
    /// complete file or none.
    public static func copy(from source: Int32, to path: String, temporarySuffix: String) throws {
        let chunk = 8 << 20
        guard let buffer = malloc(chunk) else { throw KVFailure(.noMemory, "cannot allocate a copy buffer") }
        defer { free(buffer) }
        try replaceAtomically(path, temporarySuffix: temporarySuffix) { fd, tmp in
            var offset = 0
            while true {
                let n = pread(source, buffer, chunk, off_t(offset))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw failure("cannot read the local copy for", path)
                }
                if n == 0 { break }
                try writeAll(fd, UnsafeRawBufferPointer(start: buffer, count: n), path: tmp)
                _ = cplatform_start_writeback(fd, Int64(offset), Int64(n))
                offset += n
            }
        }
    }

    /// `fill` writes a new file at path + suffix, which is fsynced, renamed over `path`, and the
    /// directory fsynced; on failure the temporary file is removed.
    private static func replaceAtomically(_ path: String, temporarySuffix: String, mode: mode_t = 0o644,
                                          fill: (_ fd: Int32, _ tmp: String) throws -> Void) throws {
        let tmp = path + temporarySuffix
        // O_EXCL: a file at the temporary name (someone else's) is never written through.
        unlink(tmp)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw failure("cannot create", tmp) }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(tmp) }
        }
        try fill(fd, tmp)
        guard fsync(fd) == 0 else { throw failure("cannot fsync", tmp) }
        guard rename(tmp, path) == 0 else { throw failure("cannot rename into place", path) }
        ok = true
        try syncDirectory(parentDirectory(path))
    }

    /// write(2) until every byte is written (or a failure).
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("cannot write", path)
            }
            if n == 0 { throw failure("cannot write", path, errno: ENOSPC) }
            done += n
        }
    }

    /// Reads a whole (small) file; nil if it cannot be read.
    public static func readAll(_ path: String, limit: Int = 64 << 20) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            if out.count > limit { return nil }
        }
    }

    /// Removes a file; a missing one is fine (another rank sharing the directory removed it).
    public static func removeFile(_ path: String) {
        unlink(path)
    }

    /// Removes a directory and the files in it (one level: version directories hold only files).
    public static func removeTree(_ path: String) {
        for name in list(path) ?? [] { unlink(path + "/" + name) }
        rmdir(path)
    }
}
