import CMPI
import FTKVCore

/// Starting and stopping MPI from Swift programs (C and Fortran programs do this themselves).
public enum MPIEnvironment {
    public enum ThreadLevel: Int32 { case single = 0, funneled, serialized, multiple }

    /// MPI_Init_thread; returns the level MPI provides.
    @discardableResult
    public static func initialize(threadLevel: ThreadLevel = .multiple) -> ThreadLevel {
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, threadLevel.rawValue, &provided)
        return ThreadLevel(rawValue: provided) ?? .single
    }

    public static func finalize() { MPI_Finalize() }

    public static var rank: Int {
        var r: Int32 = 0
        MPI_Comm_rank(cmpi_comm_world(), &r)
        return Int(r)
    }

    public static var size: Int {
        var s: Int32 = 0
        MPI_Comm_size(cmpi_comm_world(), &s)
        return Int(s)
    }

    /// Blocks until every rank of MPI_COMM_WORLD arrives (for examples and tools only).
    public static func barrier() { MPI_Barrier(cmpi_comm_world()) }
}
