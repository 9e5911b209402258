package dev.imbed

/** What the loaded `libimbed` and the C header these bindings follow say about themselves. */
public object ImbedLibrary {
    /**
     * The version of `include/imbed.h` these bindings were written against (`IMBED_VERSION`). An
     * app that loads its `libimbed.so` from elsewhere can compare it with [version].
     */
    public const val HEADER_VERSION: String = "0.1.0"

    /** The longest user id, group id or request id, in UTF-8 bytes (`IMBED_MAX_ID_LEN`). */
    public const val MAX_ID_BYTES: Int = 64

    /** The version of the loaded library (`imbed_version`), such as `0.1.0`. */
    public val version: String
        get() = ImbedNative.imbed_version().utf8()
}
