// Hosts for the balloon tests: a recording host that keeps the set of frames it holds and a log
// of every frame that changed hands, and checks that it is never lent a frame twice nor handed
// back one it does not hold; and a replacing host that also answers replace() by a policy.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <limits>
#include <set>
#include <vector>

#include <movable/models/balloon.hpp>

namespace movable::test {

enum class host_event_kind { lent, returned };
struct host_event {
    host_event_kind kind;
    frame* f;
};

// Only the required members: the balloon calls lend(new) then reclaim(old) when it migrates.
struct recording_host {
    bool lend(frame& f) noexcept {
        enter();
        if (on_lend) {
            on_lend(f);
        }
        bool taken = false;
        if (held.size() < lend_limit) {
            double_lends += held.insert(&f).second ? 0 : 1;
            events.push_back({host_event_kind::lent, &f});
            taken = true;
        }
        leave();
        return taken;
    }
    void reclaim(frame& f) noexcept {
        enter();
        if (on_reclaim) {
            on_reclaim(f);
        }
        take_back(f);
        leave();
    }

    void take_back(frame& f) {
        unknown_returns += held.erase(&f) == 0 ? 1 : 0;
        events.push_back({host_event_kind::returned, &f});
    }
    // The balloon promises never to call its host from two threads at once.
    void enter() noexcept {
        if (inside.fetch_add(1) != 0) {
            ++overlapping_calls;
        }
    }
    void leave() noexcept { inside.fetch_sub(1); }

    std::set<frame*> held;          // frames lent to the host now
    std::vector<host_event> events; // every frame that changed hands, in order
    std::size_t lend_limit = std::numeric_limits<std::size_t>::max(); // lend refuses beyond it
    std::size_t double_lends = 0;    // lent a frame it already held
    std::size_t unknown_returns = 0; // handed back a frame it did not hold
    std::atomic<int> inside{0};
    std::atomic<std::size_t> overlapping_calls{0};
    std::function<void(frame&)> on_lend;    // runs inside lend, host lock held
    std::function<void(frame&)> on_reclaim; // runs inside reclaim, host lock held
};
static_assert(balloon_host<recording_host>);

// Also answers replace(), as its policy says (replaced when there is none).
struct replacing_host : recording_host {
    balloon_replace_result replace(frame& new_frame, frame& old_frame) noexcept {
        enter();
        const balloon_replace_result answer =
            policy ? policy(new_frame, old_frame) : balloon_replace_result::replaced;
        if (answer == balloon_replace_result::replaced) {
            double_lends += held.insert(&new_frame).second ? 0 : 1;
            events.push_back({host_event_kind::lent, &new_frame});
            take_back(old_frame);
        } else if (answer == balloon_replace_result::old_returned_new_refused) {
            take_back(old_frame);
        }
        ++replace_calls;
        leave();
        return answer;
    }

    std::function<balloon_replace_result(frame& new_frame, frame& old_frame)> policy;
    std::size_t replace_calls = 0;
};
static_assert(balloon_host<replacing_host>);

} // namespace movable::test
