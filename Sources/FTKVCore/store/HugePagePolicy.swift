/// ftkv_huge_pages: whether the store's tables ask for transparent huge pages.
public enum HugePageChoice: String, Equatable, Sendable {
    /// Huge pages, unless this kernel hands free memory back to a hypervisor (below).
    case auto
    case yes
    case no

    /// What a new store does on this machine.
    public var useHugePages: Bool {
        switch self {
        case .yes: return true
        case .no: return false
        case .auto: return !HugePagePolicy.freePageReportingActive
        }
    }
}

/// Why `auto` exists: a virtual machine whose balloon driver reports free memory to its host
/// (virtio-balloon free page reporting) has its free blocks of 2 MiB and more taken back by the
/// host within seconds, and every fresh huge page is carved out of such a block, so its first
/// touch waits for the host to supply the memory again. Measured on the development VM: fresh
/// huge pages 0.33-0.36 GB/s, small pages 1.4-2.2 GB/s, and a first checkpoint 1.6-1.8x faster
/// on small pages (docs/benchmarks.md). Where nothing takes free memory back, huge pages spare
/// gets a TLB miss and stay the choice.
enum HugePagePolicy {
    /// VIRTIO_BALLOON_F_REPORTING, the feature bit of free page reporting.
    static let reportingFeatureBit = 5

    /// Read once per process: the devices do not change while a job runs.
    static let freePageReportingActive: Bool = detect()

    /// A bound virtio-balloon device that negotiated free page reporting, with the kernel's page
    /// reporting in place (its module parameters are present once it is built in).
    static func detect(sysfs: String = "/sys") -> Bool {
        guard FileSystem.list(sysfs + "/module/page_reporting") != nil else { return false }
        let driver = sysfs + "/bus/virtio/drivers/virtio_balloon"
        for device in FileSystem.list(driver) ?? [] where device.hasPrefix("virtio") {
            if let bytes = FileSystem.readAll(driver + "/" + device + "/features", limit: 4096),
               negotiates(reportingFeatureBit, features: bytes) {
                return true
            }
        }
        return false
    }

    /// A virtio device's `features` file: one '0' or '1' per feature bit, bit 0 first.
    static func negotiates(_ bit: Int, features: [UInt8]) -> Bool {
        bit < features.count && features[bit] == UInt8(ascii: "1")
    }
}
