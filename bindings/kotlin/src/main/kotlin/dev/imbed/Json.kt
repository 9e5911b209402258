package dev.imbed

import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.boolean
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.long

/** The JSON object in [json], which comes from the engine. */
internal fun jsonObject(json: String): JsonObject = Json.parseToJsonElement(json).jsonObject

/** The JSON array in [json], which comes from the engine. */
internal fun jsonArray(json: String): JsonArray = Json.parseToJsonElement(json).jsonArray

/** The JSON array of strings in [json], which comes from the engine. */
internal fun jsonStrings(json: String): List<String> = jsonStrings(Json.parseToJsonElement(json).jsonArray)

/** The strings in [array], which comes from the engine. */
internal fun jsonStrings(array: JsonArray): List<String> = array.map { it.jsonPrimitive.content }

/** The string member [key], or null when it is absent or JSON null. */
internal fun JsonObject.stringOrNull(key: String): String? = this[key]?.jsonPrimitive?.takeIf { it.isString }?.content

/** The string member [key], which the engine always writes. */
internal fun JsonObject.string(key: String): String = stringOrNull(key) ?: missing(key)

/** The integer member [key], which the engine always writes. */
internal fun JsonObject.long(key: String): Long = this[key]?.jsonPrimitive?.long ?: missing(key)

/** The boolean member [key], which the engine always writes. */
internal fun JsonObject.boolean(key: String): Boolean = this[key]?.jsonPrimitive?.boolean ?: missing(key)

/** The array member [key], which the engine always writes. */
internal fun JsonObject.array(key: String): JsonArray = this[key]?.jsonArray ?: missing(key)

/** The object member [key], which the engine always writes. */
internal fun JsonObject.obj(key: String): JsonObject = this[key]?.jsonObject ?: missing(key)

private fun JsonObject.missing(key: String): Nothing = throw IllegalStateException("the engine wrote $this without \"$key\"")
