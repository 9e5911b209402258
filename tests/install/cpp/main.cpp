// A C++ program from outside imbed's tree, built from what `make install`
// put in a prefix and found with CMake's find_package (tests/install/run).
// Like ../consumer.c: it serves on a port of its own, connects to itself
// with the client role as alice, sends bob a message and waits for the
// ack; exit 0 only once that ack came.
//
// Usage: consumer_shared|consumer_static STATE_FILE
#include <imbed.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

namespace {

constexpr auto wait_limit = std::chrono::seconds(10);

// Set by a deleter whose stop failed: destructors cannot throw.
bool stop_failed = false;

// A failed imbed call, with the engine's explanation.
std::string describe(const char *call, imbed_status status)
{
    // Copied before imbed_status_str(), another imbed_ call, may replace it.
    const std::string detail = imbed_last_error();
    return std::string(call) + ": " + imbed_status_str(static_cast<int32_t>(status)) + " (" + detail + ")";
}

void check(const char *call, imbed_status status)
{
    if (status != IMBED_OK) {
        throw std::runtime_error(describe(call, status));
    }
}

// Stopped explicitly before free, so that a stop that fails fails the program.
struct server_deleter {
    void operator()(imbed_server *server) const
    {
        if (const imbed_status status = imbed_server_stop(server); status != IMBED_OK) {
            std::fprintf(stderr, "consumer: %s\n", describe("imbed_server_stop", status).c_str());
            stop_failed = true;
        }
        imbed_server_free(server);
    }
};
struct client_deleter {
    void operator()(imbed_client *client) const
    {
        if (const imbed_status status = imbed_client_stop(client); status != IMBED_OK) {
            std::fprintf(stderr, "consumer: %s\n", describe("imbed_client_stop", status).c_str());
            stop_failed = true;
        }
        imbed_client_free(client);
    }
};
struct string_deleter {
    void operator()(char *string) const { imbed_string_free(string); }
};

// What the client's event thread hands to main.
struct progress {
    std::mutex lock;
    std::condition_variable changed;
    std::string ack;     // the first IMBED_EVENT_ACK's JSON
    std::string refused; // an IMBED_EVENT_SEND_FAILED's JSON
    std::string state;   // the last IMBED_EVENT_STATE's JSON, to explain a timeout
};

void on_client_event(void *user_data, const imbed_event *event)
{
    auto &p = *static_cast<progress *>(user_data);
    std::lock_guard<std::mutex> held(p.lock);
    if (event->kind == IMBED_EVENT_ACK && p.ack.empty()) {
        p.ack = event->json;
    } else if (event->kind == IMBED_EVENT_SEND_FAILED) {
        p.refused = event->json;
    } else if (event->kind == IMBED_EVENT_STATE) {
        p.state = event->json;
    }
    p.changed.notify_all();
}

void on_log(void *, imbed_log_level level, const char *target, const char *message)
{
    std::fprintf(stderr, "consumer: engine log (level %d) %s: %s\n", static_cast<int>(level), target, message);
}

void run(const std::string &state_path)
{
    if (std::strcmp(imbed_version(), IMBED_VERSION) != 0) {
        throw std::runtime_error(std::string("header ") + IMBED_VERSION + ", library " + imbed_version());
    }

    // Declared before the handles: stop, in their deleters, joins the threads that use it.
    progress p;

    imbed_server *raw_server = nullptr;
    check("imbed_server_new",
          imbed_server_new(R"({"listen":"127.0.0.1:0","auth":{"mode":"dev"},"log_level":"warn"})", &raw_server));
    std::unique_ptr<imbed_server, server_deleter> server(raw_server);
    imbed_listener server_listener{};
    server_listener.on_log = on_log;
    check("imbed_server_set_listener", imbed_server_set_listener(server.get(), &server_listener));
    check("imbed_server_start", imbed_server_start(server.get()));
    uint16_t port = 0;
    check("imbed_server_port", imbed_server_port(server.get(), &port));

    const std::string config = R"({"url":"ws://127.0.0.1:)" + std::to_string(port) + R"(/ws","token":"alice",)" +
                               R"("state_path":")" + state_path + R"(","log_level":"warn"})";
    imbed_client *raw_client = nullptr;
    check("imbed_client_new", imbed_client_new(config.c_str(), &raw_client));
    std::unique_ptr<imbed_client, client_deleter> client(raw_client);
    imbed_listener client_listener{};
    client_listener.user_data = &p;
    client_listener.on_event = on_client_event;
    client_listener.on_log = on_log;
    check("imbed_client_set_listener", imbed_client_set_listener(client.get(), &client_listener));
    check("imbed_client_start", imbed_client_start(client.get()));

    char *raw_id = nullptr;
    check("imbed_client_send",
          imbed_client_send(client.get(), "bob", R"({"text":"hello from C++ and an installed imbed"})", &raw_id));
    std::unique_ptr<char, string_deleter> id(raw_id);

    std::unique_lock<std::mutex> held(p.lock);
    if (!p.changed.wait_for(held, wait_limit, [&] { return !p.ack.empty() || !p.refused.empty(); })) {
        throw std::runtime_error("no ack within 10 s; last client state: " + (p.state.empty() ? "(none)" : p.state));
    }
    if (!p.refused.empty()) {
        throw std::runtime_error("the server refused the message: " + p.refused);
    }
    // The ack is for this message, in alice and bob's conversation.
    if (p.ack.find(R"("id":")" + std::string(id.get()) + '"') == std::string::npos ||
        p.ack.find(R"("conv":"dm:alice:bob")") == std::string::npos) {
        throw std::runtime_error("an ack for another message: " + p.ack + " (sent " + id.get() + ")");
    }
    std::printf("consumer (C++): imbed %s on port %u acked %s\n", imbed_version(), static_cast<unsigned>(port),
                p.ack.c_str());
}

} // namespace

int main(int argc, char **argv)
{
    if (argc != 2 || std::strpbrk(argv[1], "\"\\") != nullptr) {
        std::fprintf(stderr, "usage: %s STATE_FILE (a path without quotes or backslashes)\n", argv[0]);
        return 2;
    }
    try {
        run(argv[1]);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "consumer: %s\n", e.what());
        return 1;
    }
    return stop_failed ? 1 : 0;
}
