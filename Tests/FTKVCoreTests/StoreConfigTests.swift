import Testing
@testable import FTKVCore

private let noEnvironment: (String) -> String? = { _ in nil }

private func parse(_ given: [String: String], env: [String: String] = [:]) throws -> StoreConfig {
    try StoreConfig.parse(given: given, environment: { env[$0] })
}

/// Expects `body` to throw a KVFailure with code .invalid.
private func expectInvalid(_ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                           _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("\(what): accepted, expected KVFailure(.invalid)", sourceLocation: sourceLocation)
    } catch let e as KVFailure {
        #expect(e.code == .invalid, "\(what): \(e)", sourceLocation: sourceLocation)
        #expect(!e.message.isEmpty, sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(what): threw \(error), expected KVFailure", sourceLocation: sourceLocation)
    }
}

@Suite("StoreConfig")
struct StoreConfigTests {
    @Test("defaults")
    func defaults() throws {
        let c = try StoreConfig.parse(given: [:], environment: noEnvironment)
        #expect(c.replicas == 2)
        #expect(c.consistency == .fence)
        #expect(c.progress == .auto)
        #expect(c.timeoutSeconds == 60)
        #expect(c.node == nil)
        #expect(c == StoreConfig())
    }

    @Test("each info key")
    func eachKey() throws {
        #expect(try parse(["ftkv_replicas": "3"]).replicas == 3)
        #expect(try parse(["ftkv_replicas": " 4\t"]).replicas == 4)
        #expect(try parse(["ftkv_replicas": "1"]).replicas == 1)
        #expect(try parse(["ftkv_replicas": "64"]).replicas == 64)
        #expect(try parse(["ftkv_consistency": "sequential"]).consistency == .sequential)
        #expect(try parse(["ftkv_consistency": "SEQUENTIAL"]).consistency == .sequential)
        #expect(try parse(["ftkv_consistency": "fence"]).consistency == .fence)
        #expect(try parse(["ftkv_progress": "thread"]).progress == .thread)
        #expect(try parse(["ftkv_progress": "inline"]).progress == .inline)
        #expect(try parse(["ftkv_progress": "Auto"]).progress == .auto)
        #expect(try parse(["ftkv_timeout": "2.5"]).timeoutSeconds == 2.5)
        #expect(try parse(["ftkv_timeout": "0.001"]).timeoutSeconds == 0.001)
        #expect(try parse(["ftkv_timeout": "604800"]).timeoutSeconds == 604_800)
        #expect(try parse(["ftkv_node": "rack1-n07"]).node == "rack1-n07")
        #expect(try parse(["ftkv_node": "  n1  "]).node == "n1")

        let all = try parse(["ftkv_replicas": "3", "ftkv_consistency": "sequential", "ftkv_progress": "inline",
                             "ftkv_timeout": "10", "ftkv_node": "x"])
        var expected = StoreConfig()
        expected.replicas = 3
        expected.consistency = .sequential
        expected.progress = .inline
        expected.timeoutSeconds = 10
        expected.node = "x"
        #expect(all == expected)
    }

    @Test("the environment (upper-case name) overrides the info key")
    func environmentOverrides() throws {
        var asked: [String] = []
        let c = try StoreConfig.parse(
            given: ["ftkv_replicas": "3", "ftkv_consistency": "fence", "ftkv_timeout": "5"],
            environment: { name in
                asked.append(name)
                return ["FTKV_REPLICAS": "5", "FTKV_PROGRESS": "thread", "FTKV_NODE": "envnode"][name]
            })
        #expect(c.replicas == 5)
        #expect(c.progress == .thread)
        #expect(c.node == "envnode")
        #expect(c.consistency == .fence)     // info used where the environment is silent
        #expect(c.timeoutSeconds == 5)
        #expect(Set(asked) == Set(StoreConfig.keys.map { $0.uppercased() }))

        // A bad environment value fails even if the info value is good (it is the one used).
        expectInvalid("FTKV_REPLICAS=0 over info 3") {
            _ = try parse(["ftkv_replicas": "3"], env: ["FTKV_REPLICAS": "0"])
        }
        // The lower-case name is not consulted.
        #expect(try parse([:], env: ["ftkv_replicas": "7"]).replicas == 2)
    }

    @Test("invalid values are rejected with .invalid")
    func invalidValues() throws {
        for v in ["0", "-1", "abc", "65", "", " ", "2.5", "1e1", "99999999999999999999"] {
            expectInvalid("ftkv_replicas=\(v)") { _ = try parse(["ftkv_replicas": v]) }
            expectInvalid("FTKV_REPLICAS=\(v)") { _ = try parse([:], env: ["FTKV_REPLICAS": v]) }
        }
        for v in ["eventual", "", "fence!", "seq"] {
            expectInvalid("ftkv_consistency=\(v)") { _ = try parse(["ftkv_consistency": v]) }
        }
        for v in ["stop", "", "continue!", "1"] {
            expectInvalid("ftkv_on_failure=\(v)") { _ = try parse(["ftkv_on_failure": v]) }
        }
        #expect(try parse(["ftkv_on_failure": "abort"]).abortOnFailure)
        #expect(try !parse(["ftkv_on_failure": " Continue "]).abortOnFailure)
        #expect(try !parse([:]).abortOnFailure)
        for v in ["", "maybe", "2", "off!"] {
            expectInvalid("ftkv_huge_pages=\(v)") { _ = try parse(["ftkv_huge_pages": v]) }
        }
        #expect(try parse([:]).hugePages == .auto)
        #expect(try parse(["ftkv_huge_pages": " No "]).hugePages == .no)
        #expect(try parse([:], env: ["FTKV_HUGE_PAGES": "0"]).hugePages == .no)
        #expect(try parse([:], env: ["FTKV_HUGE_PAGES": "AUTO"]).hugePages == .auto)
        #expect(try parse(["ftkv_huge_pages": "no"], env: ["FTKV_HUGE_PAGES": "yes"]).hugePages == .yes)
        for v in ["", "auto", "2", "on!"] {
            expectInvalid("ftkv_recovery_reserve=\(v)") { _ = try parse(["ftkv_recovery_reserve": v]) }
        }
        #expect(try !parse([:]).recoveryReserve)
        #expect(try parse(["ftkv_recovery_reserve": " On "]).recoveryReserve)
        #expect(try !parse(["ftkv_recovery_reserve": "on"], env: ["FTKV_RECOVERY_RESERVE": "off"]).recoveryReserve)
        for v in ["fast", "", "threads", "none"] {
            expectInvalid("ftkv_progress=\(v)") { _ = try parse(["ftkv_progress": v]) }
        }
        for v in ["0", "-3", "nan", "inf", "-inf", "", "abc", "604801", "1e300"] {
            expectInvalid("ftkv_timeout=\(v)") { _ = try parse(["ftkv_timeout": v]) }
        }
        for v in ["", "   ", String(repeating: "n", count: 257)] {
            expectInvalid("ftkv_node of \(v.utf8.count) bytes") { _ = try parse(["ftkv_node": v]) }
        }
        #expect(try parse(["ftkv_node": String(repeating: "n", count: 256)]).node?.utf8.count == 256)
    }

    @Test("unknown ftkv_ keys are rejected, other keys ignored")
    func unknownKeys() throws {
        for k in ["ftkv_replica", "ftkv_", "ftkv_Replicas", "ftkv_timeout_s"] {
            expectInvalid("info key \(k)") { _ = try parse([k: "1"]) }
        }
        let c = try parse(["cb_nodes": "4", "romio_cb_write": "enable", "xftkv_replicas": "9"])
        #expect(c == StoreConfig())
    }

    @Test("validateName")
    func names() {
        for ok in ["heat", "a.b_c-1", "A", "x..y", "...", String(repeating: "z", count: 128)] {
            #expect(throws: Never.self, "\(ok)") { try StoreConfig.validateName(ok) }
        }
        for bad in ["", "a/b", "..", ".", String(repeating: "z", count: 129), "héllo", "a b", "a\0b", "/", "a\\b"] {
            expectInvalid("name '\(bad)'") { try StoreConfig.validateName(bad) }
        }
    }

    @Test("KVCode raw values are the stable C codes")
    func codes() {
        #expect(KVCode.allCases.map(\.rawValue) == [0, -1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -13, -14])
        #expect(KVFailure(.invalid, "x").description.contains("-3"))
    }
}

@Suite("StoreConfig: persistence keys")
struct PersistenceConfigTests {
    @Test func directoryKeepAndLoad() throws {
        let c = try StoreConfig.parse(given: ["ftkv_dir": " /scratch/x ", "ftkv_keep": "3", "ftkv_load": "7"], environment: { _ in nil })
        #expect(c.directory == "/scratch/x" && c.keep == 3 && c.load == .version(7))
        #expect(try StoreConfig.parse(given: [:], environment: { _ in nil }).load == .latest)
        #expect(try StoreConfig.parse(given: ["ftkv_load": "none"], environment: { _ in nil }).load == LoadChoice.none)
        #expect(try StoreConfig.parse(given: ["ftkv_dir": "/a"], environment: { $0 == "FTKV_DIR" ? "/b" : nil }).directory == "/b")
        for (key, bad) in [("ftkv_keep", "0"), ("ftkv_keep", "x"), ("ftkv_load", "0"), ("ftkv_load", "newest"), ("ftkv_dir", "  ")] {
            #expect(throws: KVFailure.self) { try StoreConfig.parse(given: [key: bad], environment: { _ in nil }) }
        }
    }
}
