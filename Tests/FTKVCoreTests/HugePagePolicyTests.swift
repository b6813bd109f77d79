import Testing
@testable import FTKVCore
#if canImport(Glibc)
import Glibc
#endif

/// ftkv_huge_pages=auto reads sysfs: built here as a fake tree, each way it can look.
@Suite("HugePagePolicy")
struct HugePagePolicyTests {
    static func write(_ text: String, to path: String) {
        let f = fopen(path, "w")!
        fputs(text, f)
        fclose(f)
    }

    /// A sysfs tree with page reporting built in or not, and a balloon device whose features
    /// file has `features` (nil: no balloon device bound).
    static func tree(pageReporting: Bool, features: String?) -> String {
        let root = PersistenceTests.temporaryDirectory()
        if pageReporting {
            try! FileSystem.makeDirectories(root + "/module/page_reporting/parameters")
            write("9\n", to: root + "/module/page_reporting/parameters/page_reporting_order")
        }
        let driver = root + "/bus/virtio/drivers/virtio_balloon"
        try! FileSystem.makeDirectories(driver)
        write("", to: driver + "/bind") // the driver directory's other entries are not devices
        if let features {
            try! FileSystem.makeDirectories(driver + "/virtio3")
            write(features + "\n", to: driver + "/virtio3/features")
        }
        return root
    }

    static func removeAll(_ path: String) {
        for name in FileSystem.list(path) ?? [] { removeAll(path + "/" + name) }
        if rmdir(path) != 0 { unlink(path) }
    }

    /// Whether a tree built as `tree` says is detected as reporting free pages; the tree is removed.
    static func detects(pageReporting: Bool, features: String?) -> Bool {
        let root = tree(pageReporting: pageReporting, features: features)
        defer { removeAll(root) }
        return HugePagePolicy.detect(sysfs: root)
    }

    @Test("free page reporting is detected from the balloon's feature bit 5 and the kernel's module")
    func detection() {
        // The development VM's features file, bit 5 set.
        let vm = "0110010100000000000000000000000010000000000000000000000000000000"
        #expect(Self.detects(pageReporting: true, features: vm))
        // A balloon without free page reporting (bit 5 clear).
        let plain = "0110000100000000000000000000000010000000000000000000000000000000"
        #expect(!Self.detects(pageReporting: true, features: plain))
        // No balloon device, or a kernel without page reporting: bare metal and most clusters.
        #expect(!Self.detects(pageReporting: true, features: nil))
        #expect(!Self.detects(pageReporting: false, features: vm))
        #expect(!HugePagePolicy.detect(sysfs: "/nonexistent-sysfs"))
        // A short or odd features file is not read past its end.
        #expect(!Self.detects(pageReporting: true, features: "0110"))
        #expect(!HugePagePolicy.negotiates(5, features: []))
    }

    @Test("yes and no are what they say; auto follows the detection")
    func choices() {
        #expect(HugePageChoice.yes.useHugePages)
        #expect(!HugePageChoice.no.useHugePages)
        #expect(HugePageChoice.auto.useHugePages == !HugePagePolicy.freePageReportingActive)
    }
}
