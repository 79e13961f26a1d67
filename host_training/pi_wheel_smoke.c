/* The arm64 wheel's smoke check (host_training/pi_wheel.py): cross-compiled against the wheel's
 * own libraries and run under qemu-aarch64-static with the CPU model of the board it is for.
 *
 * It loads libllama and libggml as the Python package will (they come from the wheel's
 * llama_cpp/lib), prints llama_print_system_info() -- the CPU features the library was built
 * for -- and multiplies a Q4_0 matrix by an F32 one through ggml's CPU backend, the kernel a
 * persona's every token runs (ggml_vec_dot_q4_0_q8_0: NEON, and SDOT where the build has
 * dotprod), against the product of the same 4-bit weights, dequantized, in plain C. An
 * instruction the emulated CPU lacks ends it with SIGILL; a wrong kernel with exit status 1.
 */
#include <math.h>
#include <stdio.h>

#include "ggml.h"
#include "ggml-cpu.h"

const char * llama_print_system_info(void);

enum { K = 256, M = 16, N = 4 };

int main(void) {
    printf("llama_print_system_info: %s\n", llama_print_system_info());
    ggml_cpu_init();

    struct ggml_init_params params = { 32 * 1024 * 1024, NULL, false };
    struct ggml_context * ctx = ggml_init(params);
    struct ggml_tensor * a = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, M);
    struct ggml_tensor * q = ggml_new_tensor_2d(ctx, GGML_TYPE_Q4_0, K, M);
    struct ggml_tensor * b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, N);
    float * av = (float *) a->data;
    float * bv = (float *) b->data;
    for (int i = 0; i < K * M; i++) av[i] = sinf(0.37f * (float) i);
    for (int i = 0; i < K * N; i++) bv[i] = cosf(0.11f * (float) i);
    ggml_quantize_chunk(GGML_TYPE_Q4_0, av, q->data, 0, M, K, NULL);
    static float w[K * M];  /* the weights as the kernel sees them: Q4_0, dequantized */
    ggml_get_type_traits(GGML_TYPE_Q4_0)->to_float(q->data, w, K * M);

    struct ggml_tensor * out = ggml_mul_mat(ctx, q, b);  /* [M, N]: out[n][m] = row m of a . row n of b */
    struct ggml_cgraph * graph = ggml_new_graph(ctx);
    ggml_build_forward_expand(graph, out);
    if (ggml_graph_compute_with_ctx(ctx, graph, 2) != GGML_STATUS_SUCCESS) {
        printf("ggml_graph_compute_with_ctx failed\n");
        return 1;
    }

    double worst = 0.0, scale = 0.0;
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < M; m++) {
            double want = 0.0;
            for (int k = 0; k < K; k++) want += (double) w[m * K + k] * bv[n * K + k];
            double got = ((float *) out->data)[n * M + m];
            if (fabs(got - want) > worst) worst = fabs(got - want);
            if (fabs(want) > scale) scale = fabs(want);
        }
    }
    /* The kernel rounds the activations to Q8_0 (8 bits): well under 1 % of the largest product
     * is the expected difference; a broken kernel is off by the whole product. */
    int ok = worst <= 0.01 * scale + 0.01;
    printf("q4_0 x f32 matmul %dx%dx%d on 2 threads: largest error %.4f against %.4f in plain C: %s\n",
           M, K, N, worst, scale, ok ? "ok" : "WRONG");
    ggml_free(ctx);
    return ok ? 0 : 1;
}
