package dev.imbed

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test
import java.io.File

/** The constants the bindings copy from the header, checked against it, and the library's version. */
class LibraryTest {
    /** The repository's header, seen from this project's directory (where Maven runs the tests). */
    private val header = File("../../include/imbed.h").readText()

    /** The value of `#define [name] ...` in the header. */
    private fun defined(name: String): String =
        Regex("""^#define $name (.+)$""", RegexOption.MULTILINE).find(header)?.groupValues?.get(1)
            ?: throw AssertionError("include/imbed.h defines no $name")

    @Test
    fun `the header constants are the header's`() {
        assertEquals("\"${ImbedLibrary.HEADER_VERSION}\"", defined("IMBED_VERSION"))
        assertEquals(ImbedLibrary.MAX_ID_BYTES.toString(), defined("IMBED_MAX_ID_LEN"))
    }

    @Test
    fun `the loaded library is the version of the header`() {
        assertEquals(ImbedLibrary.HEADER_VERSION, ImbedLibrary.version)
    }
}
