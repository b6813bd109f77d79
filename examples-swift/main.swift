// A Swift program using libftkv through `import FTKV`: run it under mpirun, e.g.
//   mpirun -n 2 .build/debug/ftkv-swift-example
// Every rank stores its slice of a field, the store replicates it, and every rank reads back
// every other rank's slice and checks it byte for byte.
import FTKV
import Glibc

MPIEnvironment.initialize(threadLevel: .multiple)
let rank = MPIEnvironment.rank
let size = MPIEnvironment.size
var failures = 0

do {
    let store = try KVStore(name: "swift-example")
    func slice(of r: Int) -> [UInt8] { (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ r &* 7) } }

    try store.put("field/\(rank)", slice(of: rank))
    try store.put("scratch/\(rank)", [1, 2, 3])
    try store.del("scratch/\(rank)")
    try store.fence()

    for r in 0..<size {
        if try store.get("field/\(r)") != slice(of: r) {
            print("rank \(rank): slice of rank \(r) differs")
            failures += 1
        }
        if try store.get("scratch/\(r)") != nil {
            print("rank \(rank): deleted key scratch/\(r) still has a value")
            failures += 1
        }
    }
    // A shared counter, incremented by every rank with compare-and-swap: no increment is lost.
    let increments = 50
    for _ in 0..<increments {
        while true {
            let seen = try store.get("counter")
            let next = Array(String((seen.map { Int(String(decoding: $0, as: UTF8.self))! } ?? 0) + 1).utf8)
            if try store.compareAndSwap("counter", expected: seen, desired: next) { break }
        }
    }
    try store.fence()
    let total = try store.get("counter").map { String(decoding: $0, as: UTF8.self) }
    if total != String(increments * size) {
        print("rank \(rank): counter is \(total ?? "absent"), not \(increments * size)")
        failures += 1
    }
    do {
        try store.put("", [1])
        print("rank \(rank): an empty key was accepted")
        failures += 1
    } catch let error as KVError where error.code == .invalid {
        // expected: keys are 1..65536 bytes
    }
    try store.close()
} catch {
    print("rank \(rank): \(error)")
    failures += 1
}

print("swift example, rank \(rank) of \(size): \(failures == 0 ? "PASS" : "FAIL")")
MPIEnvironment.finalize()
if failures != 0 { exit(1) }
