// swift-tools-version:6.0
import PackageDescription

// libftkv: a fault-tolerant distributed key-value checkpoint store for MPI applications.
// Layers, top to bottom: FTKVCABI (C entry points, libftkv.so) and FTKV (Swift API) over
// FTKVCore (the engine) over CMPI (the only code that touches mpi.h macros).
let package = Package(
    name: "ftkv",
    products: [
        .library(name: "ftkv", type: .dynamic, targets: ["FTKVCABI"]),
        .library(name: "FTKV", targets: ["FTKV"]),
        // Installed as bin/ftkv (the name "ftkv" is taken by the library product: libftkv.so).
        .executable(name: "ftkv-tool", targets: ["ftkv-tool"]),
        .executable(name: "ftkv-swift-example", targets: ["swift-example"]),
    ],
    targets: [
        // Open MPI's headers and -lmpi, via its own pkg-config name.
        .systemLibrary(name: "COpenMPI", pkgConfig: "ompi-c"),
        // static inline wrappers for the handle macros Swift cannot import (MPI_COMM_WORLD, ...).
        .target(name: "CMPI", dependencies: ["COpenMPI"]),
        // The public C header (include/ftkv.h) as a module, so @c @implementation checks each entry point.
        .systemLibrary(name: "CFTKV", pkgConfig: "ompi-c"),
        // System calls Swift's Glibc module lacks (mremap needs _GNU_SOURCE).
        .target(name: "CPlatform"),
        .target(name: "FTKVCore", dependencies: ["CMPI", "CPlatform"]),
        .target(name: "FTKV", dependencies: ["FTKVCore", "CMPI"]),
        .target(
            name: "FTKVCABI",
            dependencies: ["FTKVCore", "CFTKV", "CMPI", "CPlatform"],
            exclude: ["exports.map"],
            linkerSettings: [
                // Export exactly the kv_* symbols of include/ftkv.h, nothing of Swift's.
                .unsafeFlags(["-Xlinker", "--version-script=Sources/FTKVCABI/exports.map"]),
            ]
        ),
        .executableTarget(name: "ftkv-tool", dependencies: ["FTKV", "FTKVCore", "CMPI"]),
        .executableTarget(name: "swift-example", dependencies: ["FTKV"], path: "examples-swift"),
        .testTarget(name: "FTKVCoreTests", dependencies: ["FTKVCore"]),
    ],
    // Swift 5 mode: the engine guards its shared state with its own locks (pthread mutexes around
    // MPI calls), which strict-concurrency checking cannot see.
    swiftLanguageModes: [.v5]
)
