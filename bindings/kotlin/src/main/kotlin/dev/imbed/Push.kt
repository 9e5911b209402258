package dev.imbed

import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject

/** What a push request is about: a [ServerEvent.Push] or a [PendingPush]. */
public enum class PushKind {
    /** A message the user has not seen: show a notification. */
    MESSAGE,

    /** The user read past pushed messages: update the badge, withdraw what was shown. */
    READ,

    /** A kind this binding does not know (from a newer library); the event's `json` has its name. */
    UNKNOWN,
    ;

    internal companion object {
        /** The kind the engine names [name] (`"message"`), or [UNKNOWN]. */
        fun of(name: String): PushKind = entries.firstOrNull { it != UNKNOWN && it.name.equals(name, ignoreCase = true) } ?: UNKNOWN
    }
}

/** Whether the app behind a device is on screen, as its client last said (`{"type":"device","state":...}`). */
public enum class DeviceState {
    /** On screen: a session of the device is in the foreground. Users with one get no push requests. */
    FOREGROUND,

    /** Every session of the device said its app went to the background. */
    BACKGROUND,

    /** A state this binding does not know (from a newer library). */
    UNKNOWN,
    ;

    internal companion object {
        /** The state the engine names [name] (`"background"`), or [UNKNOWN]. */
        fun of(name: String): DeviceState = entries.firstOrNull { it != UNKNOWN && it.name.equals(name, ignoreCase = true) } ?: UNKNOWN
    }
}

/**
 * A device a push request may go to: one the user ever connected from.
 *
 * @property state Its state while it has a session; null when it has none, the usual case for a push.
 */
public data class PushDevice(
    public val device: String,
    public val state: DeviceState?,
)

/**
 * A push request not ended yet, from [ImbedServer.pendingPushes]: the durable part of a
 * [ServerEvent.Push], without what the engine works out when it offers one (unread count, devices).
 *
 * @property seq The message's seq ([PushKind.MESSAGE]), or the seq read up to ([PushKind.READ]).
 * @property from The sender, for [PushKind.MESSAGE]; null for [PushKind.READ].
 */
public data class PendingPush(
    public val pushId: Long,
    public val kind: PushKind,
    public val user: String,
    public val conv: String,
    public val seq: Long,
    public val from: String?,
)

/**
 * A device with a session now, from [ImbedServer.devices].
 *
 * @property state [DeviceState.FOREGROUND] when one of its [sessions] is.
 * @property sessions How many sessions it has open.
 */
public data class OnlineDevice(
    public val device: String,
    public val state: DeviceState,
    public val sessions: Int,
)

/** The devices of a push event's `devices` array. */
internal fun pushDevices(push: JsonObject): List<PushDevice> =
    push.array("devices").map { entry ->
        val device = entry.jsonObject
        PushDevice(device.string("device"), device.stringOrNull("state")?.let(DeviceState::of))
    }

/** The array `imbed_server_pending_pushes` writes. */
internal fun pendingPushes(json: String): List<PendingPush> =
    jsonArray(json).map { entry ->
        val push = entry.jsonObject
        PendingPush(
            push.long("push_id"),
            PushKind.of(push.string("kind")),
            push.string("user"),
            push.string("conv"),
            push.long("seq"),
            push.stringOrNull("from"),
        )
    }

/** The object `imbed_server_devices` writes: each user's devices, users in the engine's (sorted) order. */
internal fun onlineDevices(json: String): Map<String, List<OnlineDevice>> =
    jsonObject(json).mapValues { (_, devices) ->
        devices.jsonArray.map { entry ->
            val device = entry.jsonObject
            OnlineDevice(device.string("device"), DeviceState.of(device.string("state")), device.long("sessions").toInt())
        }
    }
