import CMPI

/// MPI_Comm as Swift sees Open MPI's handle type.
public typealias MPIComm = MPI_Comm

/// Turns an MPI result into a KVFailure(.mpi) with MPI's own text.
@inline(__always)
func mpiCheck(_ rc: Int32, _ what: @autoclosure () -> String) throws {
    if rc != MPI_SUCCESS { throw KVFailure(.mpi, "\(what()) failed: \(mpiErrorText(rc))") }
}

func mpiErrorText(_ rc: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
    var length: Int32 = 0
    guard MPI_Error_string(rc, &buffer, &length) == MPI_SUCCESS else { return "MPI error \(rc)" }
    return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self) + " (\(rc))"
}

/// Whether MPI may be called now: initialised and not finalised.
public enum MPIState {
    case usable, notInitialized, finalized

    public static var current: MPIState {
        switch cmpi_mpi_state() {
        case 0: return .usable
        case 1: return .notInitialized
        default: return .finalized
        }
    }
}
