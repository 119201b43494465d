/*
 * bench/flashmla_peer.cu — FlashMLA's dense bf16 decode kernel (Hopper) timed
 * on bench/bench_mla.c's configurations, so that r1lab's CUDA decode core can
 * be compared with it in the same ci/gpu.sh run.
 *
 * FlashMLA is not part of r1lab: bench/build_flashmla_peer.sh compiles this
 * file against a FlashMLA checkout given on its command line (its csrc/ with
 * the CUTLASS submodule), and ci/gpu.sh runs the binary when
 * R1LAB_FLASHMLA_PEER names it. What is called is what FlashMLA's
 * flash_mla_with_kvcache calls for one KV head (MQA over the latent):
 *   get_mla_metadata once (its tile scheduler), then per call the split-KV
 *   kernel and the combine kernel (both launched with programmatic dependent
 *   launch, as FlashMLA does).
 * The problem: q (b, s_q, h, 576) bf16, a paged cache of 64-row blocks
 * (576 values per row), block table shuffled, every sequence of length s_k;
 * out (b, s_q, h, 512), causal for s_q = 2 (query i sees s_k - s_q + 1 + i
 * keys), softmax scale 0.1352 — bench_mla.c's inputs and formulas:
 *   bytes read = b * s_k * 576 * 2 + b * s_q * h * 576 * 2
 *   FLOPs      = sum_b sum_i 2 * h * n_{b,i} * (576 + 512)
 * Each configuration's first sequence (its first and last 8 heads) is
 * checked against a float64 host reference (relative L2 of out <= 1e-2) before timing; a mismatch is
 * reported and the configuration skipped. Timing (bench/native_peer.h): 3 warm-up calls (the checked one and 2 more), then calls
 * each between two CUDA events until there are at least `repeats` of them and
 * they add up to at least `min-seconds` (default 0.5 s, Google Benchmark's
 * minimum time, which r1lab-bench's loop uses: a GPU at its power limit runs
 * at a lower clock than one that has idled: on an H100 a burst of 20 calls
 * measured FlashMLA 4 % (b = 128, s_q = 1) and 10 % (s_q = 2) faster than a
 * sustained loop); reported: their median and mean (r1lab-bench reports means).
 *
 *   flashmla_peer [--json PATH] [--repeats N] [--min-seconds S] [--case I]
 */
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

static const char kPeerName[] = "flashmla_peer";
#include "native_peer.h"

#include "params.h" /* FlashMLA's parameter structs */

namespace sm90 {
template <typename InputT>
void run_flash_splitkv_mla_kernel(DenseAttnDecodeParams &params);
}
namespace smxx::decode {
void run_get_decoding_sched_meta_kernel(GetDecodeSchedMetaParams &params);
template <typename ElementT>
void run_flash_mla_combine_kernel(CombineParams &params);
}  // namespace smxx::decode

namespace {

constexpr int kDimQK = 576, kDimV = 512, kBlock = 64;
constexpr float kScale = 0.1352f;

uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* bf16 bits of a float, round to nearest even (inputs are finite). */
uint16_t to_bf16(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}
float from_bf16(uint16_t half) {
    const uint32_t bits = (uint32_t)half << 16;
    float value;
    memcpy(&value, &bits, 4);
    return value;
}

struct Case {
    int batch, s_k, heads, s_q;
};

/* Uniform values in [-1, 1) as bf16 bits. */
std::vector<uint16_t> random_bf16(size_t count, uint64_t seed) {
    std::vector<uint16_t> values(count);
    for (size_t i = 0; i < count; ++i)
        values[i] = to_bf16((float)((double)(splitmix(&seed) >> 11) * 0x1p-52 - 1.0));
    return values;
}

/* Relative L2 distance between FlashMLA's out for sequence 0 and a float64
 * reference computed from the same bf16 inputs. */
double check_first_sequence(const Case &c, const std::vector<uint16_t> &q, const std::vector<uint16_t> &cache,
                            const std::vector<int> &table, const std::vector<uint16_t> &out) {
    double diff = 0, norm = 0;
    std::vector<double> scores(c.s_k), acc(kDimV);
    for (int i = 0; i < c.s_q; ++i) {
        const int visible = c.s_q == 1 ? c.s_k : c.s_k - c.s_q + 1 + i;
        for (int h = 0; h < c.heads; ++h) {
            if (h >= 8 && h < c.heads - 8) continue; /* the first and last 8 heads: both 64-row tiles */
            const uint16_t *query = &q[((size_t)i * c.heads + h) * kDimQK];
            double top = -INFINITY;
            for (int t = 0; t < visible; ++t) {
                const uint16_t *row = &cache[((size_t)table[t / kBlock] * kBlock + t % kBlock) * kDimQK];
                double dot = 0;
                for (int d = 0; d < kDimQK; ++d) dot += (double)from_bf16(query[d]) * from_bf16(row[d]);
                scores[t] = dot * kScale;
                top = std::max(top, scores[t]);
            }
            double sum = 0;
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int t = 0; t < visible; ++t) {
                const double p = std::exp(scores[t] - top);
                sum += p;
                const uint16_t *row = &cache[((size_t)table[t / kBlock] * kBlock + t % kBlock) * kDimQK];
                for (int d = 0; d < kDimV; ++d) acc[d] += p * from_bf16(row[d]);
            }
            const uint16_t *got = &out[((size_t)i * c.heads + h) * kDimV];
            for (int d = 0; d < kDimV; ++d) {
                const double want = acc[d] / sum;
                diff += (from_bf16(got[d]) - want) * (from_bf16(got[d]) - want);
                norm += want * want;
            }
        }
    }
    return std::sqrt(diff / (norm > 0 ? norm : 1));
}

struct Result {
    std::string name;
    Case c;
    double microseconds;      /* median of the timed calls */
    double mean_microseconds; /* their mean, as r1lab-bench (Google Benchmark) reports */
    int calls;
};

bool run_case(const Case &c, int repeats, double min_seconds, int sms, Result *result) {
    const int per_seq = (c.s_k + kBlock - 1) / kBlock, blocks = c.batch * per_seq;
    const int q_rows = c.s_q * c.heads; /* FlashMLA's q_seq_per_hk with one KV head */
    const size_t q_count = (size_t)c.batch * q_rows * kDimQK, cache_count = (size_t)blocks * kBlock * kDimQK;
    const size_t out_count = (size_t)c.batch * q_rows * kDimV;

    std::vector<uint16_t> q = random_bf16(q_count, 7), cache = random_bf16(cache_count, 11);
    std::vector<int> table(blocks), lens(c.batch, c.s_k);
    uint64_t state = 99;
    for (int k = 0; k < blocks; ++k) table[k] = k;
    for (int k = blocks - 1; k > 0; --k) std::swap(table[k], table[splitmix(&state) % (uint64_t)(k + 1)]);

    const int sm_parts = std::max(sms / ((q_rows + 63) / 64), 1);
    const int total_splits = c.batch + sm_parts;
    void *d_q, *d_cache, *d_out, *d_meta;
    float *d_lse, *d_lse_accum, *d_out_accum;
    int *d_table, *d_lens, *d_splits;
    CHECK(cudaMalloc(&d_q, q_count * 2));
    CHECK(cudaMalloc(&d_cache, cache_count * 2));
    CHECK(cudaMalloc(&d_out, out_count * 2));
    CHECK(cudaMalloc(&d_lse, (size_t)c.batch * q_rows * 4));
    CHECK(cudaMalloc(&d_lse_accum, (size_t)total_splits * q_rows * 4));
    CHECK(cudaMalloc(&d_out_accum, (size_t)total_splits * q_rows * kDimV * 4));
    CHECK(cudaMalloc(&d_table, (size_t)blocks * 4));
    CHECK(cudaMalloc(&d_lens, (size_t)c.batch * 4));
    CHECK(cudaMalloc(&d_splits, (size_t)(c.batch + 1) * 4));
    CHECK(cudaMalloc(&d_meta, (size_t)sm_parts * sizeof(DecodingSchedMeta)));
    CHECK(cudaMemcpy(d_q, q.data(), q_count * 2, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(d_cache, cache.data(), cache_count * 2, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(d_table, table.data(), (size_t)blocks * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(d_lens, lens.data(), (size_t)c.batch * 4, cudaMemcpyHostToDevice));
    cudaStream_t stream;
    CHECK(cudaStreamCreate(&stream));

    GetDecodeSchedMetaParams meta = {};
    meta.b = c.batch;
    meta.s_q = c.s_q;
    meta.block_size_n = kBlock;
    meta.fixed_overhead_num_blocks = 5;
    meta.topk = meta.extra_topk = -1;
    meta.seqlens_k_ptr = d_lens;
    meta.tile_scheduler_metadata_ptr = (DecodingSchedMeta *)d_meta;
    meta.num_splits_ptr = d_splits;
    meta.num_sm_parts = sm_parts;
    meta.stream = stream;
    smxx::decode::run_get_decoding_sched_meta_kernel(meta);

    DenseAttnDecodeParams p = {};
    p.b = c.batch;
    p.s_q = c.s_q;
    p.q_seq_per_hk = q_rows;
    p.d = kDimQK;
    p.d_v = kDimV;
    p.h_q = c.heads;
    p.h_k = 1;
    p.num_blocks = blocks;
    p.q_head_per_hk = c.heads;
    p.is_causal = c.s_q > 1;
    p.scale_softmax = kScale;
    p.scale_softmax_log2 = (float)(kScale * M_LOG2E);
    p.q_ptr = d_q;
    p.k_ptr = d_cache;
    p.o_ptr = d_out;
    p.softmax_lse_ptr = d_lse;
    p.q_batch_stride = (int64_t)q_rows * kDimQK;
    p.k_batch_stride = (int64_t)kBlock * kDimQK;
    p.o_batch_stride = (int64_t)q_rows * kDimV;
    p.q_row_stride = kDimQK;
    p.k_row_stride = kDimQK;
    p.o_row_stride = kDimV;
    p.q_head_stride = kDimQK;
    p.k_head_stride = kDimQK;
    p.o_head_stride = (int64_t)q_rows * kDimV;
    p.seqlens_k_ptr = d_lens;
    p.block_table = d_table;
    p.block_table_batch_stride = per_seq;
    p.page_block_size = kBlock;
    p.tile_scheduler_metadata_ptr = (DecodingSchedMeta *)d_meta;
    p.num_sm_parts = sm_parts;
    p.num_splits_ptr = d_splits;
    p.total_num_splits = total_splits;
    p.softmax_lseaccum_ptr = d_lse_accum;
    p.oaccum_ptr = d_out_accum;
    p.stream = stream;

    CombineParams combine = {};
    combine.b = c.batch;
    combine.s_q = c.s_q;
    combine.h_q = c.heads;
    combine.d_v = kDimV;
    combine.lse = d_lse;
    combine.out = d_out;
    combine.stride_lse_b = q_rows;
    combine.stride_lse_s_q = c.heads;
    combine.stride_o_b = q_rows * kDimV;
    combine.stride_o_s_q = c.heads * kDimV;
    combine.stride_o_h_q = kDimV;
    combine.lse_accum = d_lse_accum;
    combine.o_accum = d_out_accum;
    combine.stride_lse_accum_split = q_rows;
    combine.stride_lse_accum_s_q = c.heads;
    combine.stride_o_accum_split = q_rows * kDimV;
    combine.stride_o_accum_s_q = c.heads * kDimV;
    combine.stride_o_accum_h_q = kDimV;
    combine.tile_scheduler_metadata_ptr = (DecodingSchedMeta *)d_meta;
    combine.num_splits_ptr = d_splits;
    combine.num_sm_parts = sm_parts;
    combine.attn_sink = nullptr;
    combine.stream = stream;

    auto call = [&] {
        sm90::run_flash_splitkv_mla_kernel<cutlass::bfloat16_t>(p);
        smxx::decode::run_flash_mla_combine_kernel<cutlass::bfloat16_t>(combine);
    };

    char name[160];
    snprintf(name, sizeof name, "mla_decode(backend=flashmla,b=%d,s_q=%d,h=%d,s_k=%d)", c.batch, c.s_q, c.heads,
             c.s_k);
    call();
    CHECK(cudaStreamSynchronize(stream));
    std::vector<uint16_t> out((size_t)q_rows * kDimV); /* sequence 0 */
    CHECK(cudaMemcpy(out.data(), d_out, out.size() * 2, cudaMemcpyDeviceToHost));
    const double error = check_first_sequence(c, q, cache, table, out);
    bool ok = error <= 1e-2;
    if (!ok) {
        fprintf(stderr, "%s: relative L2 %.3g against the float64 reference, skipped\n", name, error);
    } else {
        const EventTimes times = time_event_calls(call, stream, 2, repeats, min_seconds);
        result->name = name;
        result->c = c;
        result->microseconds = times.median_us;
        result->mean_microseconds = times.mean_us;
        result->calls = times.calls;
    }
    CHECK(cudaStreamDestroy(stream));
    for (void *ptr : {d_q, d_cache, d_out, (void *)d_lse, (void *)d_lse_accum, (void *)d_out_accum, (void *)d_table,
                      (void *)d_lens, (void *)d_splits, d_meta})
        CHECK(cudaFree(ptr));
    return ok;
}

double bytes_read(const Case &c) {
    return (double)c.batch * c.s_k * kDimQK * 2 + (double)c.batch * c.s_q * c.heads * kDimQK * 2;
}
double flops(const Case &c) {
    double keys = 0;
    for (int i = 0; i < c.s_q; ++i) keys += c.s_q == 1 ? c.s_k : c.s_k - c.s_q + 1 + i;
    return 2.0 * c.batch * c.heads * keys * (kDimQK + kDimV);
}

}  // namespace

int main(int argc, char **argv) {
    PeerOptions options;
    const int exit_code = parse_peer_options(
        argc, argv,
        "Times FlashMLA's dense bf16 decode on bench_mla.c's configurations\n"
        "(all of them, or only the I-th, counting from 0): at least N calls\n"
        "(default 20) and S seconds of them (default 0.5).\n",
        &options);
    if (exit_code >= 0) return exit_code;
    int device = 0;
    cudaDeviceProp prop;
    if (!peer_device(&device, &prop)) return 77;
    const int sms = prop.multiProcessorCount;
    if (prop.major != 9) {
        fprintf(stderr, "flashmla_peer: FlashMLA's dense decode needs sm_90, this is %s\n", prop.name);
        return 77;
    }
    std::vector<Case> cases = {{128, 4096, 128, 1}, {128, 4096, 128, 2}};
    for (int b : {1, 16, 64})
        for (int k : {1024, 8192, 32768})
            for (int h : {16, 128}) cases.push_back({b, k, h, 1});
    std::vector<Result> results;
    int failures = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        const Case &c = cases[i];
        if (options.only >= 0 && (size_t)options.only != i) continue;
        Result r;
        if (!run_case(c, options.repeats, options.min_seconds, sms, &r)) {
            ++failures;
            continue;
        }
        const double seconds = r.microseconds * 1e-6;
        printf("%s: median %.1f us, mean %.1f us of %d calls, %.1f GB/s, %.2f TFLOP/s (median)\n",
               r.name.c_str(), r.microseconds, r.mean_microseconds, r.calls, bytes_read(c) / seconds / 1e9,
               flops(c) / seconds / 1e12);
        fflush(stdout);
        results.push_back(r);
    }
    if (options.json) {
        FILE *f = open_peer_json(options.json, prop.name, "FlashMLA dense bf16 decode (sm90)");
        if (!f) return 1;
        for (size_t i = 0; i < results.size(); ++i) {
            const Result &r = results[i];
            const double seconds = r.microseconds * 1e-6;
            fprintf(f,
                    "%s\n {\"name\": \"%s\", \"batch\": %d, \"s_k\": %d, \"heads\": %d, \"s_q\": %d, "
                    "\"microseconds\": %.3f, \"mean_microseconds\": %.3f, \"calls\": %d, "
                    "\"bytes_per_second\": %.6g, \"flops_per_second\": %.6g}",
                    i ? "," : "", r.name.c_str(), r.c.batch, r.c.s_k, r.c.heads, r.c.s_q, r.microseconds,
                    r.mean_microseconds, r.calls, bytes_read(r.c) / seconds, flops(r.c) / seconds);
        }
        close_peer_json(f);
    }
    return failures ? 1 : 0;
}
