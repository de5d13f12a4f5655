// One table at the end of a benchmark program: the ratios its benchmarks measured, one row per
// figure ("allocate+free pair, 4 threads: pool / mimalloc", "pinned read / memcpy", "resident
// growth / live: glibc"), so a reader sees them side by side instead of reading counters out of
// many lines. A program names its rows up front (which benchmark, which counter), and runs its
// benchmarks through summary_table::run, whose reporter collects each reported run's counter
// (every repetition adds a sample; the runs Google Benchmark makes to size the iterations are
// not reported, so they do not count). The table shows the median of a row's samples, their
// range, and how many there were, in the order the rows were named.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace movable::bench {

class summary_table {
public:
    // Made before benchmark::Initialize, which takes the flags it knows out of argv: the table
    // is printed only with the console format (json or csv output stays parseable).
    summary_table(int argc, char** argv) : console_(wants_console_format(argc, argv)) {}

    // The counter `counter` of the benchmark named `benchmark` is the row `label`. The name may
    // leave out a tail of '/'-separated parts: "pair" matches "pair/live:0/iterations:1".
    void add_row(std::string benchmark, std::string counter, std::string label) {
        rows_.push_back({std::move(benchmark), std::move(counter), std::move(label), {}, {}});
    }

    // Adds the counters of one reported run to the rows that name them: each repetition's run,
    // or, with --benchmark_report_aggregates_only, the median of the repetitions (one sample).
    void collect(const benchmark::BenchmarkReporter::Run& run) {
        const bool median = run.run_type == benchmark::BenchmarkReporter::Run::RT_Aggregate &&
                            run.aggregate_name == "median";
        if ((run.run_type != benchmark::BenchmarkReporter::Run::RT_Iteration && !median) ||
            run.error_occurred) {
            return;
        }
        const std::string name = median ? run.run_name.str() : run.benchmark_name();
        for (row& r : rows_) {
            const auto found = run.counters.find(r.counter);
            const bool named =
                name.compare(0, r.benchmark.size(), r.benchmark) == 0 &&
                (name.size() == r.benchmark.size() || name[r.benchmark.size()] == '/');
            if (named && found != run.counters.end()) {
                (median ? r.medians : r.samples).push_back(found->second.value);
            }
        }
    }

    // Runs the benchmarks selected on the command line (after benchmark::Initialize), reporting
    // as --benchmark_format says, then prints the table (markdown) under `title` to stdout.
    void run(const char* title) {
        if (console_) {
            collecting_reporter<benchmark::ConsoleReporter> reporter(*this);
            benchmark::RunSpecifiedBenchmarks(&reporter);
        } else {
            benchmark::RunSpecifiedBenchmarks(); // json or csv: the table would corrupt it
            return;
        }
        print(stdout, title);
    }

    void print(std::FILE* out, const char* title) const {
        std::fprintf(out, "\n%s\n\n| figure | median | min .. max | n |\n|---|---|---|---|\n",
                     title);
        for (const row& r : rows_) {
            // The repetitions themselves when they were reported, else their medians.
            const std::vector<double>& samples = r.samples.empty() ? r.medians : r.samples;
            if (samples.empty()) {
                continue; // not run (filtered out, or skipped)
            }
            const auto [low, high] = std::minmax_element(samples.begin(), samples.end());
            std::fprintf(out, "| %s | %.3f | %.3f .. %.3f | %zu%s |\n", r.label.c_str(),
                         median(samples), *low, *high, samples.size(),
                         r.samples.empty() ? " median" : "");
        }
        std::fflush(out);
    }

    static double median(std::vector<double> samples) {
        std::sort(samples.begin(), samples.end());
        const std::size_t n = samples.size();
        return n % 2 == 1 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
    }

private:
    struct row {
        std::string benchmark;
        std::string counter;
        std::string label;
        std::vector<double> samples; // one per repetition
        std::vector<double> medians; // reported aggregates (--benchmark_report_aggregates_only)
    };

    template <class Base>
    class collecting_reporter : public Base {
    public:
        explicit collecting_reporter(summary_table& table) : table_(table) {}
        void ReportRuns(const std::vector<benchmark::BenchmarkReporter::Run>& runs) override {
            Base::ReportRuns(runs);
            for (const auto& run : runs) {
                table_.collect(run);
            }
        }

    private:
        summary_table& table_;
    };

    static bool wants_console_format(int argc, char** argv) {
        for (int i = 1; i < argc; ++i) {
            if (std::strncmp(argv[i], "--benchmark_format=", 19) == 0) {
                return std::strcmp(argv[i] + 19, "console") == 0;
            }
        }
        return true;
    }

    bool console_;
    std::vector<row> rows_;
};

} // namespace movable::bench
