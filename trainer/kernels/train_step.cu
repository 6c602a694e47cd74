// The fused CUDA training step (see trainer/src/engine/cuda.rs): the kernels between the cuBLAS
// GEMMs. Same formulas as the fused CPU step in trainer/src/engine/cpu.rs; every matrix is row-major
// f32, `rows` is the batch, `h` a layer's width. Column kernels run one block per column so
// each BatchNorm statistic is a block reduction in a fixed order (runs are reproducible).
//
// Compiled to PTX by trainer/build.rs (nvcc --ptx) when the `cuda` feature is on.

#define ACT_RELU 0
#define ACT_GELU 1
#define ACT_TANH 2
#define ACT_LEAKY_RELU 3
#define ACT_SIGMOID 4

__device__ __forceinline__ float activate(int act, float z) {
    switch (act) {
        case ACT_RELU: return fmaxf(z, 0.0f);
        case ACT_GELU: return 0.5f * z * (1.0f + erff(z * 0.70710678118654752f));
        case ACT_TANH: return tanhf(z);
        // 0.01 = inference::activation::LEAKY_RELU_SLOPE (bench/cuda/run.sh checks each activation against the CPU).
        case ACT_LEAKY_RELU: return z > 0.0f ? z : 0.01f * z;
        default: return 1.0f / (1.0f + expf(-z));
    }
}

__device__ __forceinline__ float activate_grad(int act, float z) {
    switch (act) {
        case ACT_RELU: return z > 0.0f ? 1.0f : 0.0f;
        case ACT_GELU: {
            float cdf = 0.5f * (1.0f + erff(z * 0.70710678118654752f));
            float pdf = expf(-0.5f * z * z) * 0.39894228040143268f;
            return cdf + z * pdf;
        }
        case ACT_TANH: { float t = tanhf(z); return 1.0f - t * t; }
        case ACT_LEAKY_RELU: return z > 0.0f ? 1.0f : 0.01f;
        default: { float s = 1.0f / (1.0f + expf(-z)); return s * (1.0f - s); }
    }
}

// Dropout draws: a counter-based hash (splitmix64's finaliser) of the step's key and the
// element index, so masks need no generator state on the device and are reproducible.
__device__ __forceinline__ float uniform01(unsigned long long key, unsigned long long i) {
    unsigned long long z = key + (i + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);  // 24 bits: exact in f32, in [0, 1)
}

// Sum of `v` over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v) {
    __shared__ float partial[32];
    __shared__ float total;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? partial[lane] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0) total = v;
    }
    __syncthreads();
    float t = total;
    __syncthreads();  // `partial` and `total` are reused by the next call
    return t;
}

// Batch rows `idx` of the bound training set into `xb` (rows × n) and `yb` (rows).
extern "C" __global__ void gather_rows(const float* x, const float* y, const unsigned* idx, int rows, int n,
                                       float* xb, float* yb) {
    long long total = (long long)rows * n;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        long long r = e / n, c = e % n;
        long long src = idx[r];
        xb[e] = x[src * n + c];
        if (c == 0) yb[r] = y[src];
    }
}

// One hidden layer after its GEMM, training mode, one block per column j:
// z += bias; d = act(z)·mask (dropout); BatchNorm with the batch's mean and biased variance;
// running statistics updated with the unbiased variance (as torch.nn.BatchNorm1d).
// Keeps z, mask and x̂ for the backward pass; writes the layer output to `out`.
extern "C" __global__ void hidden_forward_train(float* z, const float* bias, const float* gamma, const float* beta,
                                                float* running_mean, float* running_var, float* mask, float* xhat,
                                                float* out, float* inv_std, int rows, int h, int act, float p,
                                                unsigned long long key, float momentum, float eps) {
    int j = blockIdx.x;
    float keep = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    float s = 0.0f;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        long long e = (long long)r * h + j;
        float zz = z[e] + bias[j];
        z[e] = zz;
        float m = (p > 0.0f && uniform01(key, (unsigned long long)e) < p) ? 0.0f : keep;
        mask[e] = m;
        float d = activate(act, zz) * m;
        xhat[e] = d;
        s += d;
    }
    float mean = block_sum(s) / (float)rows;
    float q = 0.0f;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        float d = xhat[(long long)r * h + j] - mean;
        q += d * d;
    }
    float var = block_sum(q) / (float)rows;
    float inv = 1.0f / sqrtf(var + eps);
    float g = gamma[j], b = beta[j];
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        long long e = (long long)r * h + j;
        float xh = (xhat[e] - mean) * inv;
        xhat[e] = xh;
        out[e] = xh * g + b;
    }
    if (threadIdx.x == 0) {
        float unbias = (float)rows / (float)(rows - 1);
        running_mean[j] = running_mean[j] * (1.0f - momentum) + mean * momentum;
        running_var[j] = running_var[j] * (1.0f - momentum) + var * (momentum * unbias);
        inv_std[j] = inv;
    }
}

// One hidden layer after its GEMM, eval mode (elementwise): bias, activation, running-statistics BatchNorm.
extern "C" __global__ void hidden_forward_eval(float* z, const float* bias, const float* gamma, const float* beta,
                                               const float* running_mean, const float* running_var, int rows, int h,
                                               int act, float eps) {
    long long total = (long long)rows * h;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        int j = (int)(e % h);
        float a = activate(act, z[e] + bias[j]);
        z[e] = (a - running_mean[j]) * (1.0f / sqrtf(running_var[j] + eps)) * gamma[j] + beta[j];
    }
}

// Add the output bias to each row of `out` (rows × k), in place.
extern "C" __global__ void add_bias(float* out, const float* bias, int rows, int k) {
    long long total = (long long)rows * k;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x)
        out[e] += bias[e % k];
}

// Output layer after its GEMM: bias, then per row the loss and d(mean loss)/d(output).
// classification (k ≥ 2): cross-entropy on logits, y holds class ids; regression (k = 1): squared
// error. The batch's summed loss is added to `loss_sum` (f64, read once per epoch); launched
// as a single block, so the sum's order is fixed.
extern "C" __global__ void output_loss(float* out, const float* bias, const float* y, float* dout,
                                       double* loss_sum, int rows, int k, int regression) {
    float bf = (float)rows;
    float loss = 0.0f;
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x) {
        float* o = out + (long long)r * k;
        float* d = dout + (long long)r * k;
        if (regression) {
            o[0] += bias[0];
            float diff = o[0] - y[r];
            loss += diff * diff;
            d[0] = 2.0f * diff / bf;
        } else {
            float mx = -INFINITY;
            for (int c = 0; c < k; c++) { o[c] += bias[c]; mx = fmaxf(mx, o[c]); }
            float s = 0.0f;
            for (int c = 0; c < k; c++) s += expf(o[c] - mx);
            float lse = mx + logf(s);
            int t = (int)y[r];
            loss += lse - o[t];
            for (int c = 0; c < k; c++) d[c] = (expf(o[c] - lse) - (c == t ? 1.0f : 0.0f)) / bf;
        }
    }
    float total = block_sum(loss);  // every thread of the block reaches this
    if (threadIdx.x == 0 && blockIdx.x == 0) *loss_sum += (double)total;
}

// Column sums of x (rows × cols) into out, one block per column.
extern "C" __global__ void column_sums(const float* x, int rows, int cols, float* out) {
    int j = blockIdx.x;
    float s = 0.0f;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) s += x[(long long)r * cols + j];
    s = block_sum(s);
    if (threadIdx.x == 0) out[j] = s;
}

// One hidden layer backward, one block per column j: from dy (gradient of the layer output)
// to dgamma, dbeta, the bias gradient and dz (gradient at the GEMM output), through
// BatchNorm's batch statistics, the dropout mask and the activation.
extern "C" __global__ void hidden_backward(const float* dy, const float* xhat, const float* z, const float* mask,
                                           const float* gamma, const float* inv_std, float* dgamma, float* dbeta,
                                           float* dbias, float* dz, int rows, int h, int act) {
    int j = blockIdx.x;
    float sg = 0.0f, sb = 0.0f;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        long long e = (long long)r * h + j;
        sg += dy[e] * xhat[e];
        sb += dy[e];
    }
    float dg = block_sum(sg), db = block_sum(sb);
    float g = gamma[j], inv = inv_std[j], bf = (float)rows;
    float s1 = db * g, s2 = dg * g;  // Σ dx̂ and Σ dx̂·x̂
    float sz = 0.0f;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        long long e = (long long)r * h + j;
        float dd = inv / bf * (bf * dy[e] * g - s1 - xhat[e] * s2);
        float v = dd * mask[e] * activate_grad(act, z[e]);
        dz[e] = v;
        sz += v;
    }
    sz = block_sum(sz);
    if (threadIdx.x == 0) {
        dgamma[j] = dg;
        dbeta[j] = db;
        dbias[j] = sz;
    }
}

// One optimizer update over the flat parameter vector (elementwise).
// kind 0: SGD with momentum (m is the momentum buffer); 1: Adam (coupled weight decay); 2: AdamW.
extern "C" __global__ void optimizer_step(float* w, const float* grad, float* m, float* v, long long n, int kind,
                                          float lr, float weight_decay, float beta1, float beta2, float eps,
                                          float k1, float k2, float step_size, float inv_bc2, float decay,
                                          float momentum_keep) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float g = grad[i];
        if (kind != 2 && weight_decay > 0.0f) g += w[i] * weight_decay;
        if (kind == 0) {
            float b = m[i] * momentum_keep + g;
            m[i] = b;
            w[i] -= b * lr;
        } else {
            float mm = m[i] * k1 + g * (1.0f - beta1);
            float vv = v[i] * k2 + g * g * (1.0f - beta2);
            m[i] = mm;
            v[i] = vv;
            float denom = sqrtf(vv * inv_bc2) + eps;
            w[i] = w[i] * decay - mm * step_size / denom;
        }
    }
}
