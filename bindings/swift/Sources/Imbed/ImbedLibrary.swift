import CImbed

/// What the linked library and the header this package was compiled with say
/// about themselves.
public enum ImbedLibrary {
    /// The version of the linked library (`imbed_version()`), such as "0.1.0".
    public static var version: String {
        String(cString: imbed_version())
    }

    /// The version of `include/imbed.h` this package was compiled with
    /// (`IMBED_VERSION`). An app that links its library from elsewhere can
    /// compare it with `version`.
    public static let headerVersion: String = IMBED_VERSION

    /// The longest user id, group id or request id, in UTF-8 bytes
    /// (`IMBED_MAX_ID_LEN`).
    public static let maxIDBytes: Int = Int(IMBED_MAX_ID_LEN)
}
