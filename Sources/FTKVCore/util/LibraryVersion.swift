/// The library's version; include/ftkv.h's FTKV_VERSION_* must match (a test checks).
public enum LibraryVersion {
    public static let major: Int32 = 0
    public static let minor: Int32 = 1
    public static let patch: Int32 = 0
    public static var string: String { "\(major).\(minor).\(patch)" }
}
