import CMPI
import FTKV
import FTKVCore
import Glibc

/// `ftkv serve`: run a store server (every rank of this mpirun job is a server rank).
///   --port-file PATH   write the port name and the secret there (mode 0600); removed at stop
///   --name NAME        publish the port under NAME (needs ompi-server across jobs)
///   --secret-file F    the secret client jobs must present (default: a random one)
///   --replicas R       copies of each key (ftkv_replicas; default 2)
///   --timeout S        ftkv_timeout of the server's waits
///   --dir DIR          durable: load the newest version committed under DIR at start (ftkv_dir;
///                      any server size), commit one on a client job's kv_commit and at
///                      `ftkv stop`. Without it the store lives in memory only, nothing loaded.
///   --load V           with --dir: which version to load (latest, none or a number; ftkv_load)
/// `ftkv stop --port-file PATH | --name NAME | --port PORT`: ask a server to stop (the secret
/// from the port file, or FTKV_SECRET).
enum Serve {
    static func run(arguments: [String]) -> Int32 {
        var options = StoreServer.Options()
        var i = 0
        while i < arguments.count {
            guard i + 1 < arguments.count else { return usage() }
            let value = arguments[i + 1]
            switch arguments[i] {
            case "--port-file": options.portFile = value
            case "--name": options.serviceName = value
            case "--secret-file":
                guard let bytes = FileSystem.readAll(value, limit: 4096) else {
                    FileHandle.standardError("ftkv serve: cannot read the secret file '\(value)'")
                    return 2
                }
                options.secret = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: " \n\t\r")
                guard !(options.secret ?? "").isEmpty else {
                    FileHandle.standardError("ftkv serve: the secret file '\(value)' is empty")
                    return 2
                }
            case "--replicas": options.storeOptions["ftkv_replicas"] = value
            case "--timeout": options.storeOptions["ftkv_timeout"] = value
            case "--dir": options.storeOptions["ftkv_dir"] = value
            case "--load": options.storeOptions["ftkv_load"] = value
            default: return usage()
            }
            i += 2
        }
        guard options.portFile != nil || options.serviceName != nil else {
            FileHandle.standardError("ftkv serve: give --port-file PATH and/or --name NAME: clients need one of them")
            return 2
        }
        if options.storeOptions["ftkv_dir"] == nil {
            guard options.storeOptions["ftkv_load"] == nil else {
                FileHandle.standardError("ftkv serve: --load needs --dir DIR (where the versions are)")
                return 2
            }
            // In memory only: never load what an FTKV_DIR or ./ftkv-data happens to hold.
            options.storeOptions["ftkv_load"] = "none"
        } else {
            options.durable = true
        }
        options.log = { line in
            print(line)
            fflush(stdout)
        }
        // SIGTERM (mpirun forwards it to every rank): stop as `ftkv stop` would.
        signal(SIGTERM) { _ in StoreServer.requestStop() }
        // A client job that vanishes leaves TCP connections that fail on the next write: that
        // must be an error code inside MPI, not a signal that ends the server.
        signal(SIGPIPE, SIG_IGN)
        return runUnderMPI("serve") {
            let server = try StoreServer.start(comm: cmpi_comm_world(), options: options)
            try server.run()
        }
    }

    static func stop(arguments: [String]) -> Int32 {
        guard arguments.count == 2 else { return usage() }
        let address: String
        switch arguments[0] {
        case "--port-file": address = "file:" + arguments[1]
        case "--name", "--port": address = arguments[1]
        default: return usage()
        }
        return runUnderMPI("stop") {
            try RemoteStore.askToStop(at: address, comm: cmpi_comm_self(), options: [:])
            if MPIEnvironment.rank == 0 { print("ftkv stop: the server at \(address) is stopping") }
        }
    }

    static func usage() -> Int32 {
        FileHandle.standardError("""
            usage: mpirun -n N ftkv serve [--port-file PATH] [--name NAME] [--secret-file F] [--replicas R] [--timeout S]
                                         [--dir DIR [--load latest|none|V]]
                   ftkv stop --port-file PATH | --name NAME | --port PORT
            """)
        return 2
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
