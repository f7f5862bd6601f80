// C++ standard containers across threads on the malloc shim: each of 8
// threads builds a map, an unordered_map of vectors, strings that grow, and
// shared_ptrs it hands to the next thread through a queue (so objects are
// freed, and their last reference dropped, on another thread than the one
// that made them). Each thread's result is a checksum of what it built;
// main recomputes every thread's checksum alone, afterwards, and compares.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr int kThreads = 8;
constexpr int kRounds = 20000;

struct Node {
    std::string name;
    std::vector<std::uint32_t> values;
};

struct Channel {
    std::mutex lock;
    std::condition_variable ready;
    std::deque<std::shared_ptr<Node>> items;
    bool closed = false;
};

std::uint64_t mix(std::uint64_t h, std::uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

std::shared_ptr<Node> make_node(std::uint32_t seed, int i)
{
    auto n = std::make_shared<Node>();
    n->name = "node-" + std::to_string(seed) + "-" + std::to_string(i);
    n->values.assign(static_cast<std::size_t>(i % 97), seed + static_cast<std::uint32_t>(i));
    return n;
}

std::uint64_t digest(const Node &n)
{
    std::uint64_t h = n.name.size();
    for (char c : n.name)
        h = mix(h, static_cast<unsigned char>(c));
    for (auto v : n.values)
        h = mix(h, v);
    return h;
}

// What a thread builds from seed: the checksum does not depend on timing.
std::uint64_t build(std::uint32_t seed, Channel *out)
{
    std::map<int, std::string> ordered;
    std::unordered_map<std::string, std::vector<int>> hashed;
    std::string text;
    std::uint64_t h = seed;
    for (int i = 0; i < kRounds; i++) {
        ordered[(i * 7919) % 5003] = std::string(static_cast<std::size_t>(i % 300), static_cast<char>('a' + i % 26));
        hashed["k" + std::to_string(i % 1500)].push_back(i);
        text += static_cast<char>('A' + (i + static_cast<int>(seed)) % 26);
        if (text.size() > 20000)
            text.erase(0, 15000);
        if (i % 5 == 0)
            ordered.erase((i * 31) % 5003);
        auto node = make_node(seed, i);
        h = mix(h, digest(*node));
        if (out && i % 3 == 0) {
            std::lock_guard<std::mutex> g(out->lock);
            out->items.push_back(std::move(node));   // dropped by the consumer thread
            out->ready.notify_one();
        }
    }
    for (const auto &kv : ordered)
        h = mix(mix(h, static_cast<std::uint64_t>(kv.first)), kv.second.size());
    std::map<std::string, std::uint64_t> sorted;   // unordered_map's order is not the checksum's business
    for (const auto &kv : hashed) {
        std::uint64_t s = 0;
        for (int v : kv.second)
            s = mix(s, static_cast<std::uint64_t>(v));
        sorted[kv.first] = s;
    }
    for (const auto &kv : sorted)
        h = mix(h, kv.second);
    for (char c : text)
        h = mix(h, static_cast<unsigned char>(c));
    return h;
}

// Drops the nodes another thread made, checking each first.
std::uint64_t consume(Channel *in, std::uint32_t producer_seed)
{
    std::uint64_t seen = 0;
    for (;;) {
        std::shared_ptr<Node> n;
        {
            std::unique_lock<std::mutex> g(in->lock);
            in->ready.wait(g, [in] { return !in->items.empty() || in->closed; });
            if (in->items.empty())
                return seen;
            n = std::move(in->items.front());
            in->items.pop_front();
        }
        if (n->name.compare(0, 5, "node-") != 0 ||
            (!n->values.empty() && n->values[0] < producer_seed))
            std::abort();
        seen++;
    }
}

}  // namespace

int main()
{
    std::vector<Channel> channels(kThreads);
    std::vector<std::uint64_t> results(kThreads), consumed(kThreads);
    std::vector<std::thread> producers, consumers;
    for (int t = 0; t < kThreads; t++) {
        consumers.emplace_back([&, t] { consumed[t] = consume(&channels[t], static_cast<std::uint32_t>(t) * 1000); });
        producers.emplace_back([&, t] { results[t] = build(static_cast<std::uint32_t>(t) * 1000, &channels[t]); });
    }
    for (auto &p : producers)
        p.join();
    for (auto &c : channels) {
        std::lock_guard<std::mutex> g(c.lock);
        c.closed = true;
        c.ready.notify_all();
    }
    for (auto &c : consumers)
        c.join();
    std::uint64_t total = 0;
    for (int t = 0; t < kThreads; t++) {
        std::uint64_t alone = build(static_cast<std::uint32_t>(t) * 1000, nullptr);
        if (alone != results[t]) {
            std::fprintf(stderr, "thread %d: checksum %016llx, alone %016llx\n", t,
                         static_cast<unsigned long long>(results[t]), static_cast<unsigned long long>(alone));
            return 1;
        }
        if (consumed[t] != (kRounds + 2) / 3) {
            std::fprintf(stderr, "thread %d: %llu nodes handed over, want %d\n", t,
                         static_cast<unsigned long long>(consumed[t]), (kRounds + 2) / 3);
            return 1;
        }
        total = mix(total, results[t]);
    }
    std::printf("cxx_containers: %d threads agree; checksum %016llx\n", kThreads, static_cast<unsigned long long>(total));
    return 0;
}
