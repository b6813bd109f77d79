/// Result codes shared by the engine, the Swift API and the C header (include/ftkv.h).
/// The raw values are the stable C codes: never renumber.
public enum KVCode: Int32, Sendable, CaseIterable {
    case ok = 0
    case notFound = -1
    case tooSmall = -2
    case invalid = -3
    case misuse = -4
    case noMemory = -5
    case io = -6
    case mpi = -7
    case timedOut = -8
    case `internal` = -9
    case remote = -10
    case dataLoss = -11
    case procFailed = -12
    case denied = -13
    case noServer = -14

    /// Static text for a code; kv_strerror returns these bytes.
    public var text: StaticString {
        switch self {
        case .ok: return "success"
        case .notFound: return "key not found"
        case .tooSmall: return "buffer too small for the value"
        case .invalid: return "invalid argument"
        case .misuse: return "misuse of the library (NULL or closed handle, MPI not initialised or finalised, wrong call order)"
        case .noMemory: return "out of memory"
        case .io: return "storage I/O error"
        case .mpi: return "MPI error"
        case .timedOut: return "timed out waiting for another rank"
        case .internal: return "internal error in libftkv"
        case .remote: return "another rank refused or could not carry out the request"
        case .dataLoss: return "every stored copy of some committed data is missing or damaged"
        case .procFailed: return "a rank involved has failed"
        case .denied: return "the server refused this client job (wrong or missing secret)"
        case .noServer: return "no store server at that port or name (unknown name, bad port, stopped server)"
        }
    }
}

/// Every engine failure: a code for programs, a message for people.
public struct KVFailure: Error, Sendable, CustomStringConvertible {
    public let code: KVCode
    public let message: String
    public init(_ code: KVCode, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code) (\(code.rawValue)): \(message)" }
}
