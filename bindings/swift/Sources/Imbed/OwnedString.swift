import CImbed

/// Runs an imbed call that returns a string through its last parameter, and
/// gives back a Swift copy of it. The C string belongs to the caller, so it
/// is freed here with `imbed_string_free` once copied.
func takeOwnedString(
    from call: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> imbed_status
) throws -> String {
    var owned: UnsafeMutablePointer<CChar>?
    try ImbedError.check(call(&owned))
    defer { imbed_string_free(owned) }
    return owned.map { String(cString: $0) } ?? ""
}
