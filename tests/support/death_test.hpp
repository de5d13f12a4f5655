// Death tests: run a piece of code in a forked child and check that it aborted with a given
// message on stderr. Used to pin the Debug/hardened contract checks.
#pragma once

#include <csignal>
#include <cstdio>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include <movable/detail/contract.hpp>

namespace movable::test {

struct death_result {
    bool aborted = false; // child was killed by SIGABRT
    std::string stderr_text;
};

template <class Body>
death_result run_expecting_death(Body&& body) {
    int pipe_fds[2];
    if (::pipe(pipe_fds) != 0) {
        return {};
    }
    // Whatever the parent has buffered would otherwise be written twice: the child's freopen
    // flushes its copy of stdout's buffer before closing it, and the parent flushes the original.
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t child = ::fork();
    if (child == 0) {
        std::signal(SIGABRT, SIG_DFL); // not the test framework's crash handler
        if (std::FILE* null_out = std::freopen("/dev/null", "w", stdout)) {
            (void)null_out;
        }
        ::dup2(pipe_fds[1], STDERR_FILENO);
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        body();
        ::_exit(0); // survived: the check did not fire
    }
    ::close(pipe_fds[1]);
    death_result result;
    char buffer[512];
    for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) {
        result.stderr_text.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(pipe_fds[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    result.aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    return result;
}

// True when `body` aborts with a contract message containing `expected`.
template <class Body>
bool dies_with(const char* expected, Body&& body) {
    const death_result result = run_expecting_death(static_cast<Body&&>(body));
    return result.aborted && result.stderr_text.find(std::string("movable: contract violated: ") +
                                                     expected) != std::string::npos;
}

} // namespace movable::test

// Skips the enclosing test case's death checks when contracts are compiled out (Release).
#define MOVABLE_REQUIRE_CONTRACTS()                                                                \
    do {                                                                                           \
        if (!::movable::detail::contracts_enabled) {                                               \
            MESSAGE("contracts are off in this build (NDEBUG without MOVABLE_HARDENED)");          \
            return;                                                                                \
        }                                                                                          \
    } while (false)
