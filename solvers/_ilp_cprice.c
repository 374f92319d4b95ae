/* The inner loops of the exact solver, compiled: the Lagrangian pricing of one layer variant
 * (solvers/_ilp_bounds.py:_price_table) and of a whole layer (_price_layer_loop: the variant
 * floors, then each variant's pricing in their order), a variant's exact Pareto curve (solvers/_ilp_model.py:
 * _exact_table_numpy), one layer of the exact search over layer curves
 * (solvers/_ilp_bounds.py:_layer_numpy, _last_layer) and its per-batch fronts
 * (_suffix_fronts), a table's cheapest rows within a
 * latency cap (solvers/_ilp_model.py:cheapest_within), and the dominance pass over the option
 * tables (solvers/_ilp_tables.py:_dominated).
 *
 * Why C: on the paper's problems column generation makes about 60 pricing calls of about a
 * hundred small numpy operations each, and Python's per-operation overhead is most of ilp's
 * time. numba would remove it too, but loading it costs half a second per process, more than
 * the whole solve. This file is built when the package is installed (setup.py, optional: where
 * no C compiler is found, the numpy code runs instead).
 *
 * Same floats as the numpy code, so the same configurations come out:
 * - a batch price is mu_b * (add_b + max(base_b, s_b)) plus, when billed_step > 0, the non-MoE
 *   function's billed wait ceil((((lat - start) + compute) + cold) / step - 1e-9) * step * price;
 * - a state's value is its cost plus numpy's pairwise sum of its batch prices (pw_sum);
 * - candidates are sorted by value, ties in (state, option) order (numpy's stable argsort);
 * - the mu-dominance front is the sweep of solvers/_ilp_kernels.py:mu_front_sweep.
 * Built with -ffp-contract=off (no fused multiply-add: numpy rounds every product).
 *
 * No numpy headers: arrays arrive as contiguous buffers (the Python caller makes them so).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TIMEOUT (-1)
#define NOMEM (-2)
#define CHECK_EVERY 1024

static double now_s(void)
{
    /* time.perf_counter's clock on Linux (CLOCK_MONOTONIC), so the caller's deadline applies */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* numpy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src), as np.sum(axis=-1)
 * applies it to a contiguous row. */
static double pw_sum(const double *a, Py_ssize_t n)
{
    if (n < 8) {
        double res = 0.;
        for (Py_ssize_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        Py_ssize_t i;
        for (int k = 0; k < 8; k++)
            r[k] = a[k];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++)
                r[k] += a[i + k];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    return pw_sum(a, n2) + pw_sum(a + n2, n - n2);
}

/* mu . latency and the like, summed in batch order */
static double dot(const double *a, const double *b, Py_ssize_t B)
{
    double r = 0.;
    for (Py_ssize_t i = 0; i < B; i++)
        r += a[i] * b[i];
    return r;
}

typedef struct {
    Py_ssize_t B;
    const double *add, *base, *mu;
    double step, start, compute, cold, price;
} Prices;

/* h_b for a slowest-replica finish x on batch b (solvers/_ilp_bounds.py:_batch_prices) */
static inline double batch_price(const Prices *p, Py_ssize_t b, double x)
{
    double lat = p->add[b] + (p->base[b] >= x ? p->base[b] : x);
    double h = lat * p->mu[b];
    if (p->step > 0.0) {
        double billed = ceil((((lat - p->start) + p->compute) + p->cold) / p->step - 1e-9) * p->step;
        h = h + billed * p->price;
    }
    return h;
}

typedef struct {
    double value;
    Py_ssize_t index;
} Keyed;

static int by_value(const void *x, const void *y)
{
    const Keyed *a = x, *b = y;
    if (a->value < b->value)
        return -1;
    if (a->value > b->value)
        return 1;
    return (a->index > b->index) - (a->index < b->index);
}

/* The mu-dominance sweep over n states in value order (c, h rows of B): keep[j] = 1 when no
 * earlier survivor i has c[i] + sum_b max(h[i,b] - h[j,b], 0) <= c[j]. surv: scratch of n.
 * Returns the survivor count or TIMEOUT. */
static Py_ssize_t mu_front(const double *c, const double *h, Py_ssize_t n, Py_ssize_t B,
                           char *keep, Py_ssize_t *surv, double deadline)
{
    Py_ssize_t m = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        if (j % CHECK_EVERY == CHECK_EVERY - 1 && now_s() > deadline)
            return TIMEOUT;
        double cj = c[j];
        const double *hj = h + j * B;
        int dominated = 0;
        for (Py_ssize_t q = m - 1; q >= 0; q--) {
            Py_ssize_t i = surv[q];
            double ci = c[i];
            if (ci > cj)
                continue;
            const double *hi = h + i * B;
            double s = 0.0;
            for (Py_ssize_t b = 0; b < B; b++) {
                double d = hi[b] - hj[b];
                if (d > 0.0)
                    s += d;
            }
            if (ci + s <= cj) {
                dominated = 1;
                break;
            }
        }
        keep[j] = (char)!dominated;
        if (!dominated)
            surv[m++] = j;
    }
    return m;
}

/* Options of one expert that another beats from the least state on are beaten from every
 * state: the expert's rows in value order at the least state, mu-front only. Writes the kept
 * rows to out, returns their count (or TIMEOUT / NOMEM). */
static Py_ssize_t prefilter(const Prices *p, const double *cost, const double *lat,
                            const int64_t *rows, Py_ssize_t K, const double *start,
                            int64_t *out, double deadline)
{
    Py_ssize_t B = p->B, kept = -1;
    double *h = malloc(sizeof(double) * K * B), *hs = malloc(sizeof(double) * K * B);
    double *cs = malloc(sizeof(double) * K);
    Keyed *key = malloc(sizeof(Keyed) * K);
    char *keep = malloc(K);
    Py_ssize_t *surv = malloc(sizeof(Py_ssize_t) * K);
    if (!h || !hs || !cs || !key || !keep || !surv) {
        kept = NOMEM;
        goto done;
    }
    for (Py_ssize_t k = 0; k < K; k++) {
        const double *l = lat + rows[k] * B;
        for (Py_ssize_t b = 0; b < B; b++)
            h[k * B + b] = batch_price(p, b, start[b] >= l[b] ? start[b] : l[b]);
        key[k].value = cost[rows[k]] + pw_sum(h + k * B, B);
        key[k].index = k;
    }
    qsort(key, K, sizeof(Keyed), by_value);
    for (Py_ssize_t q = 0; q < K; q++) {
        Py_ssize_t k = key[q].index;
        cs[q] = cost[rows[k]];
        memcpy(hs + q * B, h + k * B, sizeof(double) * B);
    }
    Py_ssize_t m = mu_front(cs, hs, K, B, keep, surv, deadline);
    if (m < 0) {
        kept = m;
        goto done;
    }
    kept = 0;
    for (Py_ssize_t q = 0; q < K; q++)
        if (keep[q])
            out[kept++] = rows[key[q].index];
done:
    free(h); free(hs); free(cs); free(key); free(keep); free(surv);
    return kept;
}

/* A growable array of candidates: (state, row, cost, value, slowest finish[B], prices[B]). */
typedef struct {
    Py_ssize_t n, cap, B;
    int64_t *state, *row;
    double *cost, *value, *slow, *h;
} Cands;

/* The capacity (doubling from ``first``) that holds ``need`` items; 0 when ``have`` does. */
static Py_ssize_t grown(Py_ssize_t have, Py_ssize_t need, Py_ssize_t first)
{
    if (need <= have)
        return 0;
    Py_ssize_t cap = have ? have : first;
    while (cap < need)
        cap *= 2;
    return cap;
}

/* realloc *p to ``bytes``; on failure *p stays valid (the caller frees it) and NOMEM. */
static int regrow(void *p, size_t bytes)
{
    void **at = p, *q = realloc(*at, bytes);
    if (!q)
        return NOMEM;
    *at = q;
    return 0;
}

static int cands_reserve(Cands *a, Py_ssize_t need)
{
    Py_ssize_t cap = grown(a->cap, need, 64);
    if (!cap)
        return 0;
    size_t n = (size_t)cap, nb = n * (size_t)a->B;
    if (regrow(&a->state, sizeof(int64_t) * n) || regrow(&a->row, sizeof(int64_t) * n)
        || regrow(&a->cost, sizeof(double) * n) || regrow(&a->value, sizeof(double) * n)
        || regrow(&a->slow, sizeof(double) * nb) || regrow(&a->h, sizeof(double) * nb))
        return NOMEM;
    a->cap = cap;
    return 0;
}

static void cands_free(Cands *a)
{
    free(a->state); free(a->row); free(a->cost); free(a->value); free(a->slow); free(a->h);
    memset(a, 0, sizeof(*a));
}

/* The pricing DP. Returns the number of configurations written to picks (0: none below the
 * limit), TIMEOUT or NOMEM. */
static Py_ssize_t price(const Prices *p, const double *cost, const double *lat,
                        const int64_t *groups, const int64_t *offsets, Py_ssize_t E,
                        const double *rest, const double *start, double limit, Py_ssize_t want,
                        double deadline, int64_t *picks, double *values)
{
    Py_ssize_t B = p->B, result = 0;
    double thr = limit + 1e-12 * fabs(limit);
    /* current states */
    Py_ssize_t S = 1;
    double *st_cost = malloc(sizeof(double)), *st_slow = malloc(sizeof(double) * B);
    double *st_value = malloc(sizeof(double));
    /* per step: each survivor's parent state and row (for the picks) */
    int64_t **parent = calloc(E ? E : 1, sizeof(int64_t *)), **row = calloc(E ? E : 1, sizeof(int64_t *));
    int64_t *filtered = NULL;
    Keyed *key = NULL;
    char *keep = NULL;
    Py_ssize_t *surv = NULL;
    double *fc = NULL, *fh = NULL;
    Cands cand = {0, 0, B, NULL, NULL, NULL, NULL, NULL, NULL};
    double *s = malloc(sizeof(double) * (B ? B : 1)), *h = malloc(sizeof(double) * (B ? B : 1));
    if (!st_cost || !st_slow || !st_value || !parent || !row || !s || !h) {
        result = NOMEM;
        goto done;
    }
    st_cost[0] = 0.0;
    st_value[0] = 0.0;
    memcpy(st_slow, start, sizeof(double) * B);
    for (Py_ssize_t step = 0; step < E; step++) {
        if (now_s() > deadline) {
            result = TIMEOUT;
            goto done;
        }
        const int64_t *rows = groups + offsets[step];
        Py_ssize_t K = (Py_ssize_t)(offsets[step + 1] - offsets[step]);
        if (K > 64) {
            free(filtered);
            filtered = malloc(sizeof(int64_t) * K);
            if (!filtered) {
                result = NOMEM;
                goto done;
            }
            K = prefilter(p, cost, lat, rows, K, start, filtered, deadline);
            if (K < 0) {
                result = K;
                goto done;
            }
            rows = filtered;
        }
        cand.n = 0;
        for (Py_ssize_t i = 0; i < S; i++) {
            if (i % CHECK_EVERY == CHECK_EVERY - 1 && now_s() > deadline) {
                result = TIMEOUT;
                goto done;
            }
            const double *si = st_slow + i * B;
            /* the cheapest option that leaves the state's latency as it is (the first of equals) */
            Py_ssize_t fit_k = -1;
            double fit_c = INFINITY;
            for (Py_ssize_t k = 0; k < K; k++) {
                const double *l = lat + rows[k] * B;
                Py_ssize_t b = 0;
                while (b < B && l[b] <= si[b])
                    b++;
                if (b == B) {
                    double ck = st_cost[i] + cost[rows[k]];
                    if (ck < fit_c) {
                        fit_c = ck;
                        fit_k = k;
                    }
                }
            }
            for (Py_ssize_t k = 0; k < K; k++) {
                const double *l = lat + rows[k] * B;
                if (k != fit_k) {
                    Py_ssize_t b = 0;
                    while (b < B && l[b] <= si[b])
                        b++;
                    if (b == B)
                        continue; /* fits, not the cheapest fitting option */
                }
                double c = st_cost[i] + cost[rows[k]];
                for (Py_ssize_t b = 0; b < B; b++) {
                    s[b] = si[b] >= l[b] ? si[b] : l[b];
                    h[b] = batch_price(p, b, s[b]);
                }
                double value = c + pw_sum(h, B);
                if (!isfinite(c) || !(value + rest[step] <= thr))
                    continue;
                if (cands_reserve(&cand, cand.n + 1)) {
                    result = NOMEM;
                    goto done;
                }
                Py_ssize_t n = cand.n++;
                cand.state[n] = i;
                cand.row[n] = rows[k];
                cand.cost[n] = c;
                cand.value[n] = value;
                memcpy(cand.slow + n * B, s, sizeof(double) * B);
                memcpy(cand.h + n * B, h, sizeof(double) * B);
            }
        }
        Py_ssize_t n = cand.n;
        if (n == 0)
            goto done; /* nothing below the limit: result 0 */
        free(key); free(keep); free(surv); free(fc); free(fh);
        key = malloc(sizeof(Keyed) * n);
        keep = malloc(n);
        surv = malloc(sizeof(Py_ssize_t) * n);
        fc = malloc(sizeof(double) * n);
        fh = malloc(sizeof(double) * n * B);
        if (!key || !keep || !surv || !fc || !fh) {
            result = NOMEM;
            goto done;
        }
        for (Py_ssize_t q = 0; q < n; q++) {
            key[q].value = cand.value[q];
            key[q].index = q;
        }
        qsort(key, n, sizeof(Keyed), by_value);
        for (Py_ssize_t q = 0; q < n; q++) {
            fc[q] = cand.cost[key[q].index];
            memcpy(fh + q * B, cand.h + key[q].index * B, sizeof(double) * B);
        }
        Py_ssize_t m = mu_front(fc, fh, n, B, keep, surv, deadline);
        if (m < 0) {
            result = m;
            goto done;
        }
        double *nc = malloc(sizeof(double) * m), *ns = malloc(sizeof(double) * m * B);
        double *nv = malloc(sizeof(double) * m);
        parent[step] = malloc(sizeof(int64_t) * m);
        row[step] = malloc(sizeof(int64_t) * m);
        if (!nc || !ns || !nv || !parent[step] || !row[step]) {
            free(nc); free(ns); free(nv);
            result = NOMEM;
            goto done;
        }
        for (Py_ssize_t q = 0; q < m; q++) {
            Py_ssize_t k = key[surv[q]].index;
            nc[q] = cand.cost[k];
            nv[q] = cand.value[k];
            memcpy(ns + q * B, cand.slow + k * B, sizeof(double) * B);
            parent[step][q] = cand.state[k];
            row[step][q] = cand.row[k];
        }
        free(st_cost); free(st_slow); free(st_value);
        st_cost = nc;
        st_slow = ns;
        st_value = nv;
        S = m;
    }
    /* The survivors are in value order (the last sort; ties in candidate order), as numpy's
     * stable argsort of their values leaves them: the first ``want`` are the answer. */
    result = S < want ? S : want;
    for (Py_ssize_t o = 0; o < result; o++) {
        Py_ssize_t q = o;
        values[o] = st_value[o];
        for (Py_ssize_t step = E - 1; step >= 0; step--) {
            picks[o * E + step] = row[step][q];
            q = (Py_ssize_t)parent[step][q];
        }
    }
done:
    if (parent)
        for (Py_ssize_t step = 0; step < E; step++)
            free(parent[step]);
    if (row)
        for (Py_ssize_t step = 0; step < E; step++)
            free(row[step]);
    free(parent); free(row);
    free(st_cost); free(st_slow); free(st_value);
    free(filtered); free(key); free(keep); free(surv); free(fc); free(fh);
    free(s); free(h);
    cands_free(&cand);
    return result;
}

static int need(Py_buffer *buf, Py_ssize_t items, Py_ssize_t size, const char *name)
{
    if (buf->len != items * size) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", name, buf->len, items * size);
        return -1;
    }
    return 0;
}

static int need_batches(Py_ssize_t B)
{
    if (B < 1) {
        PyErr_SetString(PyExc_ValueError, "need B >= 1");
        return -1;
    }
    return 0;
}

/* The Python error for a failed DP (TIMEOUT, NOMEM); 0 when r is a result. */
static int raise_for(Py_ssize_t r, const char *what)
{
    if (r == TIMEOUT)
        PyErr_Format(PyExc_TimeoutError, "%s passed its deadline", what);
    else if (r == NOMEM)
        PyErr_NoMemory();
    else
        return 0;
    return -1;
}

static void release(Py_buffer **all, size_t n)
{
    for (size_t i = 0; i < n; i++)
        PyBuffer_Release(all[i]);
}

/* Every expert's rows lie inside the table and the offsets rise within the groups. */
static int check_groups(const int64_t *groups, Py_ssize_t G, const int64_t *offsets, Py_ssize_t E,
                        Py_ssize_t n)
{
    for (Py_ssize_t e = 0; e <= E; e++)
        if (offsets[e] < 0 || offsets[e] > G || (e > 0 && offsets[e] < offsets[e - 1])) {
            PyErr_SetString(PyExc_ValueError, "offsets must rise from 0 to len(groups)");
            return -1;
        }
    for (Py_ssize_t g = 0; g < G; g++)
        if (groups[g] < 0 || groups[g] >= n) {
            PyErr_SetString(PyExc_ValueError, "groups: a row outside the table");
            return -1;
        }
    return 0;
}

/* -- exact layer curves (solvers/_ilp_model.py:exact_curve, one variant table) ------------- */

/* what lex_cmp compares (qsort has no context argument; per thread: the GIL is released) */
static _Thread_local const double *lex_base;
static _Thread_local Py_ssize_t lex_dim;

static int lex_cmp(const void *x, const void *y)
{
    Py_ssize_t a = *(const Py_ssize_t *)x, b = *(const Py_ssize_t *)y;
    const double *pa = lex_base + a * lex_dim, *pb = lex_base + b * lex_dim;
    for (Py_ssize_t d = 0; d < lex_dim; d++) {
        if (pa[d] < pb[d])
            return -1;
        if (pa[d] > pb[d])
            return 1;
    }
    return (a > b) - (a < b);
}

/* keep[i] = 1 for the points (n rows of D) no other point weakly dominates, the first of
 * equal points (solvers/_ilp_model.py:_pareto). Returns the count kept, TIMEOUT or NOMEM. */
static Py_ssize_t pareto(const double *v, Py_ssize_t n, Py_ssize_t D, char *keep, double deadline)
{
    Py_ssize_t *order = malloc(sizeof(Py_ssize_t) * (n ? n : 1));
    Py_ssize_t *surv = malloc(sizeof(Py_ssize_t) * (n ? n : 1));
    if (!order || !surv) {
        free(order); free(surv);
        return NOMEM;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        order[i] = i;
    lex_base = v;
    lex_dim = D;
    qsort(order, n, sizeof(Py_ssize_t), lex_cmp);
    Py_ssize_t m = 0;
    if (n > 0)
        memset(keep, 0, (size_t)n);
    for (Py_ssize_t q = 0; q < n; q++) {
        if (q % CHECK_EVERY == CHECK_EVERY - 1 && now_s() > deadline) {
            m = TIMEOUT;
            break;
        }
        const double *p = v + order[q] * D;
        int dominated = 0;
        for (Py_ssize_t r = m - 1; r >= 0 && !dominated; r--) {
            const double *o = v + surv[r] * D;
            Py_ssize_t d = 0;
            while (d < D && o[d] <= p[d])
                d++;
            dominated = d == D;
        }
        if (!dominated) {
            surv[m++] = order[q];
            keep[order[q]] = 1;
        }
    }
    free(order); free(surv);
    return m;
}

typedef struct {
    Py_ssize_t B;
    const double *add, *base, *mu;
    int kind; /* 0: no cost depends on the latency, 1: a constant (direct), 2: billed wait */
    double direct_usd, step, start, compute, cold, price;
    int has_prune;
    double limit;
} Prune;

/* prune.admits(cost + rest + extra_usd(lat_now), lat_now) for a slowest finish s */
static int admits(const Prune *p, double cost_rest, const double *s, double *lat, double *x)
{
    Py_ssize_t B = p->B;
    for (Py_ssize_t b = 0; b < B; b++)
        lat[b] = p->add[b] + (p->base[b] >= s[b] ? p->base[b] : s[b]);
    double extra = 0.0;
    if (p->kind == 1) {
        extra = p->direct_usd;
    } else if (p->kind == 2) {
        for (Py_ssize_t b = 0; b < B; b++)
            x[b] = ceil((((lat[b] - p->start) + p->compute) + p->cold) / p->step - 1e-9) * p->step * p->price;
        extra = pw_sum(x, B) / (double)B;
    }
    double value = (cost_rest + extra) + dot(lat, p->mu, B);
    return value <= p->limit + 1e-9 * fabs(p->limit);
}

/* The exact DP of one variant table: states (cost, slowest finish[B], active[B] when conc),
 * Pareto-pruned after each expert. Writes *out (malloc'd picks, P x E in step order) and
 * returns P; 0 when no state survives; TIMEOUT past the deadline, NOMEM, or TOO_BIG when a step
 * would pass max_cells values or a front passes max_front (the Python caller returns None). */
#define TOO_BIG (-3)
static Py_ssize_t exact(const Prune *p, const double *cost, const double *lat, const double *active,
                        int conc, const int64_t *groups, const int64_t *offsets, Py_ssize_t E,
                        const double *rest, const double *start, Py_ssize_t max_front,
                        Py_ssize_t max_cells, double deadline, int64_t **out)
{
    Py_ssize_t B = p->B, D = 1 + B + (conc ? B : 0), result = 0;
    Py_ssize_t S = 1;
    double *st = malloc(sizeof(double) * D);
    int64_t **parent = calloc(E, sizeof(int64_t *)), **row = calloc(E, sizeof(int64_t *));
    double *cand = NULL, *latb = malloc(sizeof(double) * B), *xb = malloc(sizeof(double) * B);
    int64_t *cstate = NULL, *crow = NULL;
    char *keep = NULL;
    *out = NULL;
    if (!st || !parent || !row || !latb || !xb) {
        result = NOMEM;
        goto done;
    }
    st[0] = 0.0;
    memcpy(st + 1, start, sizeof(double) * B);
    if (conc)
        memset(st + 1 + B, 0, sizeof(double) * B);
    for (Py_ssize_t step = 0; step < E; step++) {
        if (now_s() > deadline) {
            result = TIMEOUT;
            goto done;
        }
        const int64_t *rows = groups + offsets[step];
        Py_ssize_t K = (Py_ssize_t)(offsets[step + 1] - offsets[step]);
        if (S * K * D > max_cells || (max_front > 0 && max_front * 16 < S * K)) {
            result = TOO_BIG;
            goto done;
        }
        free(cand); free(cstate); free(crow); free(keep);
        cand = malloc(sizeof(double) * (S * K > 0 ? S * K : 1) * D);
        cstate = malloc(sizeof(int64_t) * (S * K > 0 ? S * K : 1));
        crow = malloc(sizeof(int64_t) * (S * K > 0 ? S * K : 1));
        keep = malloc(S * K > 0 ? S * K : 1);
        if (!cand || !cstate || !crow || !keep) {
            result = NOMEM;
            goto done;
        }
        Py_ssize_t n = 0;
        for (Py_ssize_t i = 0; i < S; i++) {
            if (i % CHECK_EVERY == CHECK_EVERY - 1 && now_s() > deadline) {
                result = TIMEOUT;
                goto done;
            }
            const double *si = st + i * D;
            Py_ssize_t fit_k = -1;
            if (!conc) { /* options that fit under the state: only the cheapest (first of equals) */
                double fit_c = INFINITY;
                for (Py_ssize_t k = 0; k < K; k++) {
                    const double *l = lat + rows[k] * B;
                    Py_ssize_t b = 0;
                    while (b < B && l[b] <= si[1 + b])
                        b++;
                    if (b == B && si[0] + cost[rows[k]] < fit_c) {
                        fit_c = si[0] + cost[rows[k]];
                        fit_k = k;
                    }
                }
            }
            for (Py_ssize_t k = 0; k < K; k++) {
                const double *l = lat + rows[k] * B;
                if (!conc && k != fit_k) {
                    Py_ssize_t b = 0;
                    while (b < B && l[b] <= si[1 + b])
                        b++;
                    if (b == B)
                        continue;
                }
                double *c = cand + n * D;
                c[0] = si[0] + cost[rows[k]];
                for (Py_ssize_t b = 0; b < B; b++)
                    c[1 + b] = si[1 + b] >= l[b] ? si[1 + b] : l[b];
                if (conc) {
                    const double *a = active + rows[k] * B;
                    for (Py_ssize_t b = 0; b < B; b++)
                        c[1 + B + b] = si[1 + B + b] + a[b];
                }
                if (!isfinite(c[0]))
                    continue;
                if (p->has_prune && !admits(p, c[0] + rest[step], c + 1, latb, xb))
                    continue;
                cstate[n] = i;
                crow[n] = rows[k];
                n++;
            }
        }
        Py_ssize_t m = pareto(cand, n, D, keep, deadline);
        if (m < 0) {
            result = m;
            goto done;
        }
        if (max_front > 0 && m > max_front) {
            result = TOO_BIG;
            goto done;
        }
        double *ns = malloc(sizeof(double) * (m ? m : 1) * D);
        parent[step] = malloc(sizeof(int64_t) * (m ? m : 1));
        row[step] = malloc(sizeof(int64_t) * (m ? m : 1));
        if (!ns || !parent[step] || !row[step]) {
            free(ns);
            result = NOMEM;
            goto done;
        }
        Py_ssize_t q = 0;
        for (Py_ssize_t j = 0; j < n; j++)
            if (keep[j]) {
                memcpy(ns + q * D, cand + j * D, sizeof(double) * D);
                parent[step][q] = cstate[j];
                row[step][q] = crow[j];
                q++;
            }
        free(st);
        st = ns;
        S = m;
        if (S == 0)
            goto done; /* result 0 */
    }
    *out = malloc(sizeof(int64_t) * (S ? S : 1) * E);
    if (!*out) {
        result = NOMEM;
        goto done;
    }
    for (Py_ssize_t f = 0; f < S; f++) {
        Py_ssize_t q = f;
        for (Py_ssize_t step = E - 1; step >= 0; step--) {
            (*out)[f * E + step] = row[step][q];
            q = (Py_ssize_t)parent[step][q];
        }
    }
    result = S;
done:
    if (parent)
        for (Py_ssize_t step = 0; step < E; step++)
            free(parent[step]);
    if (row)
        for (Py_ssize_t step = 0; step < E; step++)
            free(row[step]);
    free(parent); free(row); free(st); free(cand); free(cstate); free(crow); free(keep);
    free(latb); free(xb);
    return result;
}

PyDoc_STRVAR(exact_table_doc,
"exact_table(cost, lat, active, groups, offsets, rest, start, add, base, mu, B, conc, kind,\n"
"            direct_usd, step, nonmoe_start, compute, cold, price, has_prune, limit,\n"
"            max_front, max_cells, deadline) -> bytes | None\n\n"
"Every Pareto-optimal configuration of one variant table (exact_curve's DP) as int64 rows,\n"
"one configuration after another, experts in step order; None when a step passes\n"
"``max_cells`` values or a front passes ``max_front`` (0: no limit). Raises TimeoutError\n"
"past ``deadline``.");

static PyObject *exact_table(PyObject *self, PyObject *args)
{
    Py_buffer bcost, blat, bactive, bgroups, boffsets, brest, bstart, badd, bbase, bmu;
    Py_ssize_t B, max_front, max_cells;
    int conc, kind, has_prune;
    double direct_usd, step, nstart, compute, cold, pprice, limit, deadline;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*npiddddddpdnnd", &bcost, &blat, &bactive,
                          &bgroups, &boffsets, &brest, &bstart, &badd, &bbase, &bmu, &B, &conc,
                          &kind, &direct_usd, &step, &nstart, &compute, &cold, &pprice,
                          &has_prune, &limit, &max_front, &max_cells, &deadline))
        return NULL;
    PyObject *result = NULL;
    Py_buffer *all[] = {&bcost, &blat, &bactive, &bgroups, &boffsets, &brest, &bstart, &badd, &bbase, &bmu};
    Py_ssize_t n = bcost.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t E = boffsets.len / (Py_ssize_t)sizeof(int64_t) - 1;
    if (B < 1 || E < 1) {
        PyErr_SetString(PyExc_ValueError, "need B >= 1 and at least one expert");
        goto fail;
    }
    if (need(&blat, n * B, sizeof(double), "lat") || need(&bactive, n * B, sizeof(double), "active")
        || need(&brest, E, sizeof(double), "rest") || need(&bstart, B, sizeof(double), "start")
        || need(&badd, B, sizeof(double), "add") || need(&bbase, B, sizeof(double), "base")
        || need(&bmu, B, sizeof(double), "mu"))
        goto fail;
    if (check_groups(bgroups.buf, bgroups.len / (Py_ssize_t)sizeof(int64_t), boffsets.buf, E, n))
        goto fail;
    Prune p = {B, badd.buf, bbase.buf, bmu.buf, kind, direct_usd, step, nstart, compute, cold,
               pprice, has_prune, limit};
    int64_t *picks = NULL;
    Py_ssize_t r;
    Py_BEGIN_ALLOW_THREADS
    r = exact(&p, bcost.buf, blat.buf, bactive.buf, conc, bgroups.buf, boffsets.buf, E, brest.buf,
              bstart.buf, max_front, max_cells, deadline, &picks);
    Py_END_ALLOW_THREADS
    if (r == TOO_BIG)
        result = Py_NewRef(Py_None);
    else if (!raise_for(r, "exact curve"))
        result = PyBytes_FromStringAndSize((const char *)picks, r * E * (Py_ssize_t)sizeof(int64_t));
    free(picks);
fail:
    release(all, sizeof(all) / sizeof(all[0]));
    return result;
}

PyDoc_STRVAR(price_table_doc,
"price_table(cost, lat, groups, offsets, rest, start, add, base, mu, picks, values, B, want,\n"
"            step, nonmoe_start, compute, cold, price, limit, deadline) -> int\n\n"
"The least-value configurations of one variant table: writes up to ``want`` of them (rows\n"
"in expert step order) to ``picks``, their values to ``values``, and returns how many; 0\n"
"when none is below ``limit``.\n"
"Raises TimeoutError past ``deadline`` (time.perf_counter's clock).");

static PyObject *price_table(PyObject *self, PyObject *args)
{
    Py_buffer bcost, blat, bgroups, boffsets, brest, bstart, badd, bbase, bmu, bpicks, bvalues;
    Py_ssize_t B, want;
    double step, nstart, compute, cold, pprice, limit, deadline;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*w*w*nnddddddd", &bcost, &blat, &bgroups,
                          &boffsets, &brest, &bstart, &badd, &bbase, &bmu, &bpicks, &bvalues, &B, &want,
                          &step, &nstart, &compute, &cold, &pprice, &limit, &deadline))
        return NULL;
    PyObject *out = NULL;
    Py_buffer *all[] = {&bcost, &blat, &bgroups, &boffsets, &brest, &bstart, &badd, &bbase, &bmu, &bpicks, &bvalues};
    Py_ssize_t n = bcost.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t E = boffsets.len / (Py_ssize_t)sizeof(int64_t) - 1;
    if (B < 1 || want < 1 || E < 1) {
        PyErr_SetString(PyExc_ValueError, "need B >= 1, want >= 1 and at least one expert");
        goto fail;
    }
    if (need(&blat, n * B, sizeof(double), "lat") || need(&brest, E, sizeof(double), "rest")
        || need(&bstart, B, sizeof(double), "start") || need(&badd, B, sizeof(double), "add")
        || need(&bbase, B, sizeof(double), "base") || need(&bmu, B, sizeof(double), "mu")
        || need(&bpicks, want * E, sizeof(int64_t), "picks")
        || need(&bvalues, want, sizeof(double), "values"))
        goto fail;
    const int64_t *groups = bgroups.buf, *offsets = boffsets.buf;
    if (check_groups(groups, bgroups.len / (Py_ssize_t)sizeof(int64_t), offsets, E, n))
        goto fail;
    Prices p = {B, badd.buf, bbase.buf, bmu.buf, step, nstart, compute, cold, pprice};
    Py_ssize_t r;
    Py_BEGIN_ALLOW_THREADS
    r = price(&p, bcost.buf, blat.buf, groups, offsets, E, brest.buf, bstart.buf, limit, want,
              deadline, bpicks.buf, bvalues.buf);
    Py_END_ALLOW_THREADS
    if (!raise_for(r, "pricing"))
        out = PyLong_FromSsize_t(r);
fail:
    release(all, sizeof(all) / sizeof(all[0]));
    return out;
}

/* One table's floor (solvers/_ilp_bounds.py:variant_floor): every expert at its cheapest option
 * except the one that also pays its own option's latency price, the best such expert; own (E)
 * and h (B) are scratch. */
static double floor_of(const Prices *p, const double *cost, const double *lat,
                       const int64_t *expert, Py_ssize_t n, const double *least, Py_ssize_t E,
                       const double *start, double cnst, double *own, double *h)
{
    Py_ssize_t B = p->B;
    for (Py_ssize_t e = 0; e < E; e++)
        own[e] = INFINITY;
    for (Py_ssize_t r = 0; r < n; r++) {
        const double *l = lat + r * B;
        for (Py_ssize_t b = 0; b < B; b++)
            h[b] = batch_price(p, b, start[b] >= l[b] ? start[b] : l[b]);
        double v = cost[r] + pw_sum(h, B);
        if (v < own[expert[r]] || isnan(v)) /* np.minimum keeps NaN */
            own[expert[r]] = v;
    }
    double most = -INFINITY;
    for (Py_ssize_t e = 0; e < E; e++) {
        double d = own[e] - least[e];
        if (d > most || isnan(d)) /* np.max: NaN wins */
            most = d;
    }
    return (pw_sum(least, E) + most) + cnst;
}

static int experts_inside(const int64_t *expert, Py_ssize_t n, Py_ssize_t E)
{
    for (Py_ssize_t r = 0; r < n; r++)
        if (expert[r] < 0 || expert[r] >= E) {
            PyErr_SetString(PyExc_ValueError, "expert: an index outside least");
            return -1;
        }
    return 0;
}

/* A layer's variant tables in one set of arrays (solvers/_ilp_tables.py:LayerFlat): table i
 * has rows rows[i]:rows[i+1] of cost (n,), lat (n, B), expert (n,); experts
 * experts[i]:experts[i+1] of least; row i of start, add, base (T, B); params (T, 6): billing
 * step, non-MoE start, compute, cold, price per batch, constant (the direct layer's non-MoE
 * cost). */
typedef struct {
    Py_ssize_t n, m, T, B;
    const double *cost, *lat, *least, *start, *add, *base, *par, *mu;
    const int64_t *expert, *rows, *exps;
} Layer;

/* Fill *L from its buffers and check every size and offset (a Python error and -1 if not). */
static int layer_of(Layer *L, Py_buffer *bcost, Py_buffer *blat, Py_buffer *bexpert,
                    Py_buffer *bleast, Py_buffer *bstart, Py_buffer *badd, Py_buffer *bbase,
                    Py_buffer *bmu, Py_buffer *brows, Py_buffer *bexp, Py_buffer *bpar,
                    Py_ssize_t B)
{
    Py_ssize_t n = bcost->len / (Py_ssize_t)sizeof(double);
    Py_ssize_t m = bleast->len / (Py_ssize_t)sizeof(double);
    Py_ssize_t T = brows->len / (Py_ssize_t)sizeof(int64_t) - 1;
    if (B < 1 || B > 4096 || T < 0) {
        PyErr_SetString(PyExc_ValueError, "need 1 <= B <= 4096 and row offsets");
        return -1;
    }
    if (need(blat, n * B, sizeof(double), "lat") || need(bexpert, n, sizeof(int64_t), "expert")
        || need(bstart, T * B, sizeof(double), "start") || need(badd, T * B, sizeof(double), "add")
        || need(bbase, T * B, sizeof(double), "base") || need(bmu, B, sizeof(double), "mu")
        || need(bexp, T + 1, sizeof(int64_t), "experts") || need(bpar, T * 6, sizeof(double), "params"))
        return -1;
    const int64_t *rows = brows->buf, *exps = bexp->buf, *expert = bexpert->buf;
    int bad = rows[0] != 0 || rows[T] != n || exps[0] != 0 || exps[T] != m;
    for (Py_ssize_t i = 0; i < T && !bad; i++)
        bad = rows[i + 1] < rows[i] || exps[i + 1] <= exps[i];
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "layer: offsets outside the arrays");
        return -1;
    }
    for (Py_ssize_t i = 0; i < T; i++)
        if (experts_inside(expert + rows[i], rows[i + 1] - rows[i], exps[i + 1] - exps[i]))
            return -1;
    *L = (Layer){n, m, T, B, bcost->buf, blat->buf, bleast->buf, bstart->buf, badd->buf, bbase->buf,
                 bpar->buf, bmu->buf, expert, rows, exps};
    return 0;
}

/* Table i's prices at the layer's mu. */
static Prices prices_of(const Layer *L, Py_ssize_t i)
{
    const double *q = L->par + 6 * i;
    return (Prices){L->B, L->add + i * L->B, L->base + i * L->B, L->mu, q[0], q[1], q[2], q[3], q[4]};
}

/* Every table's floor into out (T); own (m) and h (B) are scratch. */
static void floors_of(const Layer *L, double *out, double *own, double *h)
{
    const int64_t *rows = L->rows, *exps = L->exps;
    for (Py_ssize_t i = 0; i < L->T; i++) {
        Prices p = prices_of(L, i);
        out[i] = floor_of(&p, L->cost + rows[i], L->lat + rows[i] * L->B, L->expert + rows[i],
                          rows[i + 1] - rows[i], L->least + exps[i], exps[i + 1] - exps[i],
                          L->start + i * L->B, L->par[6 * i + 5], own, h);
    }
}

PyDoc_STRVAR(variant_floors_doc,
"variant_floors(cost, lat, expert, least, start, add, base, mu, rows, experts, params, B)\n"
"    -> bytes\n\n"
"solvers/_ilp_bounds.py:variant_floor of T tables at once, the same floats (a layer's\n"
"variants, solvers/_ilp_tables.py:LayerFlat):\n"
"table i has rows rows[i]:rows[i+1] of cost (n,), lat (n, B), expert (n,); experts\n"
"experts[i]:experts[i+1] of least; row i of start, add, base (T, B); params (T, 6): billing\n"
"step, non-MoE start, compute, cold, price per batch, constant. float64 bytes (T,).");

static PyObject *variant_floors(PyObject *self, PyObject *args)
{
    Py_buffer bcost, blat, bexpert, bleast, bstart, badd, bbase, bmu, brows, bexp, bpar;
    Py_ssize_t B;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*y*n", &bcost, &blat, &bexpert, &bleast,
                          &bstart, &badd, &bbase, &bmu, &brows, &bexp, &bpar, &B))
        return NULL;
    PyObject *result = NULL;
    Py_buffer *all[] = {&bcost, &blat, &bexpert, &bleast, &bstart, &badd, &bbase, &bmu, &brows,
                        &bexp, &bpar};
    Layer L;
    double *own = NULL, *h = NULL;
    if (layer_of(&L, &bcost, &blat, &bexpert, &bleast, &bstart, &badd, &bbase, &bmu, &brows, &bexp,
                 &bpar, B))
        goto fail;
    own = malloc(sizeof(double) * (size_t)(L.m > 0 ? L.m : 1));
    h = malloc(sizeof(double) * (size_t)B);
    result = PyBytes_FromStringAndSize(NULL, L.T * (Py_ssize_t)sizeof(double));
    if (!own || !h || !result) {
        Py_CLEAR(result);
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto fail;
    }
    floors_of(&L, (double *)PyBytes_AS_STRING(result), own, h);
fail:
    free(own); free(h);
    release(all, sizeof(all) / sizeof(all[0]));
    return result;
}

/* np.argsort(kind="stable") of the floors: NaN last, ties by index. */
static int by_floor(const void *x, const void *y)
{
    const Keyed *a = x, *b = y;
    int na = isnan(a->value), nb = isnan(b->value);
    if (na != nb)
        return na - nb;
    if (!na && a->value != b->value)
        return a->value < b->value ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

PyDoc_STRVAR(price_layer_doc,
"price_layer(cost, lat, expert, least, start, add, base, mu, rows, experts, params, groups,\n"
"            offsets, rest, picks, tables, values, B, upper, slack, want, deadline)\n"
"    -> (found, best, value)\n\n"
"solvers/_ilp_bounds.py:price_layer over a LayerFlat (see variant_floors), the same floats:\n"
"the tables in order of their floors, each priced (price_table, up to ``want``\n"
"configurations below the least value so far, plus ``slack`` times its size) until a floor\n"
"reaches that value. Table i's groups are groups[rows[i]:rows[i+1]] (its rows, experts in\n"
"step order), its offsets offsets[experts[i] + i:experts[i + 1] + i + 1], its rest\n"
"rest[experts[i]:experts[i + 1]]. Writes each configuration found, in that order: its table\n"
"to ``tables``, its rows (step order) one after another to ``picks``, its DP value (with\n"
"the table's constant) to ``values``; returns how many, the index of the least one (-1:\n"
"none below ``upper``) and the least value (``upper`` when none). Raises TimeoutError past\n"
"``deadline``.");

static PyObject *price_layer(PyObject *self, PyObject *args)
{
    Py_buffer bcost, blat, bexpert, bleast, bstart, badd, bbase, bmu, brows, bexp, bpar, bgroups,
        boffsets, brest, bpicks, btables, bvalues;
    Py_ssize_t B, want;
    double upper, slack, deadline;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*y*y*y*y*w*w*w*nddnd", &bcost, &blat, &bexpert,
                          &bleast, &bstart, &badd, &bbase, &bmu, &brows, &bexp, &bpar, &bgroups,
                          &boffsets, &brest, &bpicks, &btables, &bvalues, &B, &upper, &slack, &want,
                          &deadline))
        return NULL;
    PyObject *result = NULL;
    Py_buffer *all[] = {&bcost, &blat, &bexpert, &bleast, &bstart, &badd, &bbase, &bmu, &brows,
                        &bexp, &bpar, &bgroups, &boffsets, &brest, &bpicks, &btables, &bvalues};
    Layer L;
    double *floors = NULL, *own = NULL, *h = NULL;
    Keyed *order = NULL;
    if (layer_of(&L, &bcost, &blat, &bexpert, &bleast, &bstart, &badd, &bbase, &bmu, &brows, &bexp,
                 &bpar, B))
        goto fail;
    if (want < 1 || want > 1024) {
        PyErr_SetString(PyExc_ValueError, "need 1 <= want <= 1024");
        goto fail;
    }
    if (need(&bgroups, L.n, sizeof(int64_t), "groups") || need(&boffsets, L.m + L.T, sizeof(int64_t), "offsets")
        || need(&brest, L.m, sizeof(double), "rest") || need(&bpicks, want * L.m, sizeof(int64_t), "picks")
        || need(&btables, want * L.T, sizeof(int64_t), "tables")
        || need(&bvalues, want * L.T, sizeof(double), "values"))
        goto fail;
    const int64_t *groups = bgroups.buf, *offsets = boffsets.buf;
    for (Py_ssize_t i = 0; i < L.T; i++) {
        Py_ssize_t ni = L.rows[i + 1] - L.rows[i], Ei = L.exps[i + 1] - L.exps[i];
        const int64_t *off = offsets + L.exps[i] + i;
        if (off[0] != 0 || off[Ei] != ni) {
            PyErr_SetString(PyExc_ValueError, "offsets must rise from 0 to the table's rows");
            goto fail;
        }
        if (check_groups(groups + L.rows[i], ni, off, Ei, ni))
            goto fail;
    }
    floors = malloc(sizeof(double) * (size_t)(L.T > 0 ? L.T : 1));
    order = malloc(sizeof(Keyed) * (size_t)(L.T > 0 ? L.T : 1));
    own = malloc(sizeof(double) * (size_t)(L.m > 0 ? L.m : 1));
    h = malloc(sizeof(double) * (size_t)B);
    if (!floors || !order || !own || !h) {
        PyErr_NoMemory();
        goto fail;
    }
    int64_t *picks = bpicks.buf, *tables = btables.buf;
    double *values = bvalues.buf, value = upper;
    Py_ssize_t found = 0, at = 0, best = -1, r = 0;
    Py_BEGIN_ALLOW_THREADS
    floors_of(&L, floors, own, h);
    for (Py_ssize_t i = 0; i < L.T; i++)
        order[i] = (Keyed){floors[i], i};
    qsort(order, (size_t)L.T, sizeof(Keyed), by_floor);
    for (Py_ssize_t q = 0; q < L.T; q++) {
        Py_ssize_t i = order[q].index, Ei = L.exps[i + 1] - L.exps[i];
        if (floors[i] >= value)
            break; /* this table and every later one cannot go below value */
        Prices p = prices_of(&L, i);
        double cnst = L.par[6 * i + 5];
        r = price(&p, L.cost + L.rows[i], L.lat + L.rows[i] * B, groups + L.rows[i],
                  offsets + L.exps[i] + i, Ei, (const double *)brest.buf + L.exps[i],
                  L.start + i * B, (value + slack * fabs(value)) - cnst, want, deadline,
                  picks + at, values + found);
        if (r < 0)
            break;
        for (Py_ssize_t k = 0; k < r; k++) {
            tables[found + k] = i;
            values[found + k] += cnst;
        }
        if (r > 0 && values[found] < value) {
            value = values[found];
            best = found;
        }
        found += r;
        at += r * Ei;
    }
    Py_END_ALLOW_THREADS
    if (!raise_for(r < 0 ? r : 0, "pricing"))
        result = Py_BuildValue("nnd", found, best, value);
fail:
    free(floors); free(order); free(own); free(h);
    release(all, sizeof(all) / sizeof(all[0]));
    return result;
}

/* -- one layer of the exact search over layer curves (solvers/_ilp_bounds.py:search) ------- */

/* A growable array of partial plans that survive a layer: flat index state * n_p + option,
 * cost, latency per batch. */
typedef struct {
    Py_ssize_t n, cap, B;
    int64_t *k;
    double *c, *s;
} Survivors;

static int survivors_reserve(Survivors *a, Py_ssize_t need)
{
    Py_ssize_t cap = grown(a->cap, need, 1024);
    if (!cap)
        return 0;
    if (regrow(&a->k, sizeof(int64_t) * (size_t)cap) || regrow(&a->c, sizeof(double) * (size_t)cap)
        || regrow(&a->s, sizeof(double) * (size_t)cap * (size_t)a->B))
        return NOMEM;
    a->cap = cap;
    return 0;
}

static void survivors_free(Survivors *a)
{
    free(a->k); free(a->c); free(a->s);
    memset(a, 0, sizeof(*a));
}

/* _front_at: the least front value with time at most t (ft ascending), inf where none fits. */
static double front_at(const double *fc, const double *ft, Py_ssize_t n, double t)
{
    double x = (t + 1e-12 * fabs(t)) + 1e-15;
    Py_ssize_t lo = 0, hi = n; /* numpy's searchsorted(side="right"): the first ft > x */
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (ft[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 ? fc[lo - 1] : INFINITY;
}

/* The cut pool's test of one partial plan (cost c, residual capacity d): is
 * c + max_k (rest_k - mu_k . d) past the limit? Rounding is monotone, so one multiplier past
 * it decides; the one that cut last (*last) is tried first. */
static int pool_cuts(double c, const double *d, const double *mu, const double *rest,
                     Py_ssize_t K, Py_ssize_t B, double limit, Py_ssize_t *last)
{
    for (Py_ssize_t q = 0; q < K; q++) {
        Py_ssize_t k = (q + *last) % K;
        if (!(c + (rest[k] - dot(d, mu + k * B, B)) <= limit)) {
            *last = k;
            return 1;
        }
    }
    return 0;
}

typedef struct {
    Py_ssize_t B, K, F;
    const double *cap, *mu;
    double rest, limit;
    const double *pool_mu, *pool_rest;          /* K multipliers and their suffix sums */
    const int64_t *front_b, *front_off;         /* F fronts: batch, offsets into fc/ft */
    const double *front_m, *front_c, *front_t;  /* relaxed multipliers (F x B), points */
} Stage;

/* Every (state, option) whose bounds all stay within the limit, in (state, option) order:
 * the plain Lagrangian bound, the pool's best cut and each batch's front (the tests of
 * search's numpy steps; all must pass, so their order does not change who survives). The dot
 * products sum in batch order, where numpy's matmul may sum in another: a partial plan within
 * an ulp of the limit could be judged differently. The limit carries a 1e-12 relative
 * tolerance, so both paths keep every plan that can reach the target.
 * Returns the survivor count, TIMEOUT or NOMEM. */
static Py_ssize_t expand(const Stage *g, const double *st_c, const double *st_s, Py_ssize_t n_s,
                         const double *cost, const double *lat, Py_ssize_t n_p, double deadline,
                         Survivors *out)
{
    Py_ssize_t B = g->B;
    double *s = malloc(sizeof(double) * B), *d = malloc(sizeof(double) * B);
    Py_ssize_t result = 0, last_cut = 0, last_front = 0;
    if (!s || !d) {
        result = NOMEM;
        goto done;
    }
    for (Py_ssize_t si = 0; si < n_s; si++) {
        if (si % 16 == 15 && now_s() > deadline) {
            result = TIMEOUT;
            goto done;
        }
        for (Py_ssize_t pi = 0; pi < n_p; pi++) {
            double c = st_c[si] + cost[pi];
            for (Py_ssize_t b = 0; b < B; b++) {
                s[b] = st_s[si * B + b] + lat[pi * B + b];
                d[b] = g->cap[b] - s[b];
            }
            if (!((c + g->rest) - dot(d, g->mu, B) <= g->limit))
                continue;
            /* The pool's cuts, then each batch's front (the front that cut last first). */
            int cut = pool_cuts(c, d, g->pool_mu, g->pool_rest, g->K, B, g->limit, &last_cut);
            for (Py_ssize_t q = 0; q < g->F && !cut; q++) {
                Py_ssize_t f = (q + last_front) % g->F;
                Py_ssize_t lo = g->front_off[f], n = g->front_off[f + 1] - lo;
                double v = c + front_at(g->front_c + lo, g->front_t + lo, n, d[g->front_b[f]]);
                if (!(v - dot(d, g->front_m + f * B, B) <= g->limit)) {
                    cut = 1;
                    last_front = f;
                }
            }
            if (cut)
                continue;
            if (survivors_reserve(out, out->n + 1)) {
                result = NOMEM;
                goto done;
            }
            out->k[out->n] = si * n_p + pi;
            out->c[out->n] = c;
            memcpy(out->s + out->n * B, s, sizeof(double) * B);
            out->n++;
        }
    }
    result = out->n;
done:
    free(s); free(d);
    return result;
}

PyDoc_STRVAR(search_layer_doc,
"search_layer(st_c, st_s, cost, lat, cap, mu, rest, limit, pool_mu, pool_rest, front_b,\n"
"             front_off, front_m, front_c, front_t, B, deadline) -> (bytes, bytes, bytes)\n\n"
"One non-final layer of solvers/_ilp_bounds.py:search: every partial plan (state, option)\n"
"whose plain Lagrangian bound, best pool cut and per-batch front bounds are all at most\n"
"``limit``, as (int64 flat indices state * len(cost) + option, float64 costs, float64\n"
"latencies (n, B)). Raises TimeoutError past ``deadline``.");

static PyObject *search_layer(PyObject *self, PyObject *args)
{
    Py_buffer bstc, bsts, bcost, blat, bcap, bmu, bpmu, bprest, bfb, bfoff, bfm, bfc, bft;
    double rest, limit, deadline;
    Py_ssize_t B;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*ddy*y*y*y*y*y*y*nd", &bstc, &bsts, &bcost, &blat,
                          &bcap, &bmu, &rest, &limit, &bpmu, &bprest, &bfb, &bfoff, &bfm, &bfc,
                          &bft, &B, &deadline))
        return NULL;
    PyObject *result = NULL;
    Py_buffer *all[] = {&bstc, &bsts, &bcost, &blat, &bcap, &bmu, &bpmu, &bprest, &bfb, &bfoff,
                        &bfm, &bfc, &bft};
    Py_ssize_t n_s = bstc.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t n_p = bcost.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t K = bprest.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t F = bfb.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t P = bfc.len / (Py_ssize_t)sizeof(double);
    if (need_batches(B))
        goto fail;
    if (need(&bsts, n_s * B, sizeof(double), "st_s") || need(&blat, n_p * B, sizeof(double), "lat")
        || need(&bcap, B, sizeof(double), "cap") || need(&bmu, B, sizeof(double), "mu")
        || need(&bpmu, K * B, sizeof(double), "pool_mu")
        || need(&bfoff, F + 1, sizeof(int64_t), "front_off")
        || need(&bfm, F * B, sizeof(double), "front_m") || need(&bft, P, sizeof(double), "front_t"))
        goto fail;
    const int64_t *fb = bfb.buf, *foff = bfoff.buf;
    for (Py_ssize_t f = 0; f < F; f++)
        if (fb[f] < 0 || fb[f] >= B || foff[f] < 0 || foff[f + 1] < foff[f] || foff[f + 1] > P) {
            PyErr_SetString(PyExc_ValueError, "fronts: a batch or an offset outside the arrays");
            goto fail;
        }
    Stage g = {B, K, F, bcap.buf, bmu.buf, rest, limit, bpmu.buf, bprest.buf, fb, foff,
               bfm.buf, bfc.buf, bft.buf};
    Survivors out = {0, 0, B, NULL, NULL, NULL};
    Py_ssize_t r;
    Py_BEGIN_ALLOW_THREADS
    r = expand(&g, bstc.buf, bsts.buf, n_s, bcost.buf, blat.buf, n_p, deadline, &out);
    Py_END_ALLOW_THREADS
    if (!raise_for(r, "search")) /* y# of NULL is None: no survivor gives empty bytes */
        result = Py_BuildValue("y#y#y#", r ? (const char *)out.k : "", r * (Py_ssize_t)sizeof(int64_t),
                               r ? (const char *)out.c : "", r * (Py_ssize_t)sizeof(double),
                               r ? (const char *)out.s : "", r * B * (Py_ssize_t)sizeof(double));
    survivors_free(&out);
fail:
    release(all, sizeof(all) / sizeof(all[0]));
    return result;
}

PyDoc_STRVAR(search_last_doc,
"search_last(st_c, st_s, cost, lat, cap, limit, B) -> int\n\n"
"The final layer of solvers/_ilp_bounds.py:search: the flat index state * len(cost) + option\n"
"of the cheapest plan within every batch's capacity (cap + 1e-12 |cap|) and at most\n"
"``limit`` (the first of equals), or -1 when there is none.");

static PyObject *search_last(PyObject *self, PyObject *args)
{
    Py_buffer bstc, bsts, bcost, blat, bcap;
    double limit;
    Py_ssize_t B;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*dn", &bstc, &bsts, &bcost, &blat, &bcap, &limit, &B))
        return NULL;
    PyObject *result = NULL;
    Py_buffer *all[] = {&bstc, &bsts, &bcost, &blat, &bcap};
    Py_ssize_t n_s = bstc.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t n_p = bcost.len / (Py_ssize_t)sizeof(double);
    if (need_batches(B))
        goto fail;
    if (need(&bsts, n_s * B, sizeof(double), "st_s") || need(&blat, n_p * B, sizeof(double), "lat")
        || need(&bcap, B, sizeof(double), "cap"))
        goto fail;
    const double *st_c = bstc.buf, *st_s = bsts.buf, *cost = bcost.buf, *lat = blat.buf,
                 *cap = bcap.buf;
    Py_ssize_t best = -1;
    double least = INFINITY;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t si = 0; si < n_s; si++)
        for (Py_ssize_t pi = 0; pi < n_p; pi++) {
            double c = st_c[si] + cost[pi];
            if (!(c <= limit) || (best >= 0 && !(c < least)))
                continue;
            int fits = 1;
            for (Py_ssize_t b = 0; b < B && fits; b++)
                fits = st_s[si * B + b] + lat[pi * B + b] <= cap[b] + 1e-12 * fabs(cap[b]);
            if (fits) {
                best = si * n_p + pi;
                least = c;
            }
        }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(best);
fail:
    release(all, sizeof(all) / sizeof(all[0]));
    return result;
}

/* -- the cheapest rows within a cap (solvers/_ilp_tables.py:VariantTable.cheapest_fitting) -- */

PyDoc_STRVAR(cheapest_within_doc,
"cheapest_within(lat, add, by, expert, cap, rows, B) -> bool\n\n"
"Per expert the first row in ``by`` order (expert, then cost, then row) with add[b] + lat[r, b]\n"
"<= cap[b] on every batch, written to ``rows`` (one per expert, experts in order); False when\n"
"some expert has none (``rows`` is then partly written).");

static PyObject *cheapest_within(PyObject *self, PyObject *args)
{
    Py_buffer blat, badd, bby, bexpert, bcap, brows;
    Py_ssize_t B;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*n", &blat, &badd, &bby, &bexpert, &bcap, &brows, &B))
        return NULL;
    PyObject *result = NULL;
    Py_buffer *all[] = {&blat, &badd, &bby, &bexpert, &bcap, &brows};
    Py_ssize_t n = bby.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t E = brows.len / (Py_ssize_t)sizeof(int64_t);
    if (need_batches(B))
        goto fail;
    if (need(&blat, n * B, sizeof(double), "lat") || need(&badd, B, sizeof(double), "add")
        || need(&bexpert, n, sizeof(int64_t), "expert") || need(&bcap, B, sizeof(double), "cap"))
        goto fail;
    const int64_t *by = bby.buf, *expert = bexpert.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        if (by[i] < 0 || by[i] >= n || expert[i] < 0 || expert[i] >= E) {
            PyErr_SetString(PyExc_ValueError, "by, expert: an index outside the table");
            goto fail;
        }
    const double *lat = blat.buf, *add = badd.buf, *cap = bcap.buf;
    int64_t *rows = brows.buf;
    Py_ssize_t found = 0;
    for (Py_ssize_t e = 0; e < E; e++)
        rows[e] = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t r = by[i], e = expert[r];
        if (rows[e] >= 0)
            continue;
        int fits = 1;
        for (Py_ssize_t b = 0; b < B && fits; b++)
            fits = add[b] + lat[r * B + b] <= cap[b];
        if (fits) {
            rows[e] = r;
            found++;
        }
    }
    result = PyBool_FromLong(found == E);
fail:
    release(all, sizeof(all) / sizeof(all[0]));
    return result;
}

/* -- dominance among one table row's options (solvers/_ilp_tables.py:_dominated) ----------- */

PyDoc_STRVAR(dominated_doc,
"dominated(vec, D, R, K, pairwise_max, out) -> None\n\n"
"solvers/_ilp_tables.py:_dominated of a (D, R, K) float64 array into ``out`` (R x K bytes,\n"
"1 = dominated): per row, options in stable cost order; every finite option after the first\n"
"one whose latency terms all sit at the row's floor is dominated; when 2..pairwise_max\n"
"options are left, each is dominated when an earlier one left is no worse in every term.");

/* The dominance pass over rows r0, r0 + step, ... of a (D, R, K) array (rows are independent:
 * two threads take every other row). key, floor, live, front: scratch of K, D, K, K. */
typedef struct {
    const double *vec;
    Py_ssize_t D, R, K, pairwise_max, r0, step;
    char *out;
    Keyed *key;
    double *floor;
    Py_ssize_t *live, *front;
} DomRows;

static void *dominate_rows(void *arg)
{
    const DomRows *a = arg;
    const double *vec = a->vec;
    Py_ssize_t D = a->D, R = a->R, K = a->K;
    Keyed *key = a->key;
    double *floor = a->floor;
    Py_ssize_t *live = a->live, *front = a->front;
    char *out = a->out;
    for (Py_ssize_t r = a->r0; r < R; r += a->step) {
#define TERM(d, k) vec[((d) * R + r) * K + (k)]
        Py_ssize_t n = 0, F = 0;
        for (Py_ssize_t k = 0; k < K; k++) { /* numpy's stable argsort of the finite costs */
            double c = TERM(0, k);
            if (isfinite(c)) { /* the others are never live nor marked */
                key[F].value = c;
                key[F++].index = k;
            }
        }
        qsort(key, F, sizeof(Keyed), by_value);
        for (Py_ssize_t d = 1; d < D; d++) { /* the least finite term (+inf when none) */
            double f = INFINITY;
            for (Py_ssize_t k = 0; k < K; k++) {
                double v = TERM(d, k);
                if (isfinite(v) && v < f)
                    f = v;
            }
            floor[d] = f;
        }
        for (Py_ssize_t i = 0; i < F; i++) {
            Py_ssize_t k = key[i].index;
            live[n++] = k;
            int at_floor = 1;
            for (Py_ssize_t d = 1; d < D && at_floor; d++)
                at_floor = TERM(d, k) <= floor[d];
            if (at_floor) { /* every later option is dominated by this one */
                for (Py_ssize_t j = i + 1; j < F; j++)
                    out[r * K + key[j].index] = 1;
                break;
            }
        }
        if (n > 1 && n <= a->pairwise_max) {
            Py_ssize_t m = 0; /* the options left so far that nothing earlier dominates */
            for (Py_ssize_t i = 0; i < n; i++) {
                Py_ssize_t k = live[i];
                int dom = 0;
                for (Py_ssize_t q = 0; q < m && !dom; q++) {
                    Py_ssize_t j = front[q];
                    int no_worse = 1;
                    for (Py_ssize_t d = 1; d < D && no_worse; d++)
                        no_worse = TERM(d, j) <= TERM(d, k);
                    dom = no_worse;
                }
                if (dom)
                    out[r * K + k] = 1;
                else
                    front[m++] = k;
            }
        }
#undef TERM
    }
    return NULL;
}

/* Below this many (row, option) cells a second thread costs more than it saves. */
#define DOMINANCE_THREAD_CELLS 20000

static PyObject *dominated(PyObject *self, PyObject *args)
{
    Py_buffer bvec, bout;
    Py_ssize_t D, R, K, pairwise_max;
    if (!PyArg_ParseTuple(args, "y*nnnnw*", &bvec, &D, &R, &K, &pairwise_max, &bout))
        return NULL;
    PyObject *result = NULL;
    Py_buffer *all[] = {&bvec, &bout};
    if (D < 1 || R < 0 || K < 1 || (R > 0 && D > PY_SSIZE_T_MAX / R / K)) {
        PyErr_SetString(PyExc_ValueError, "need D >= 1, R >= 0, K >= 1");
        goto fail;
    }
    if (need(&bvec, D * R * K, sizeof(double), "vec") || need(&bout, R * K, 1, "out"))
        goto fail;
    int threads = R > 1 && R * K >= DOMINANCE_THREAD_CELLS ? 2 : 1;
    DomRows part[2];
    void *scratch[2][4] = {{NULL}};
    int ok = 1;
    for (int t = 0; t < threads; t++) {
        scratch[t][0] = malloc(sizeof(Keyed) * K);
        scratch[t][1] = malloc(sizeof(double) * D);
        scratch[t][2] = malloc(sizeof(Py_ssize_t) * K);
        scratch[t][3] = malloc(sizeof(Py_ssize_t) * K);
        ok = ok && scratch[t][0] && scratch[t][1] && scratch[t][2] && scratch[t][3];
        part[t] = (DomRows){bvec.buf, D, R, K, pairwise_max, t, threads, bout.buf,
                            scratch[t][0], scratch[t][1], scratch[t][2], scratch[t][3]};
    }
    if (!ok) {
        PyErr_NoMemory();
    } else {
        Py_BEGIN_ALLOW_THREADS
        memset(bout.buf, 0, R * K);
        pthread_t other;
        int spawned = threads == 2 && pthread_create(&other, NULL, dominate_rows, &part[1]) == 0;
        if (threads == 2 && !spawned) { /* no second thread: this one takes every row */
            part[0].step = 1;
        }
        dominate_rows(&part[0]);
        if (spawned)
            pthread_join(other, NULL);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 4; i++)
            free(scratch[t][i]);
fail:
    release(all, sizeof(all) / sizeof(all[0]));
    return result;
}

PyDoc_STRVAR(pool_keep_doc,
"pool_keep(ok, c, s, cap, pool_mu, pool_rest, limit, B) -> bytes\n\n"
"The int64 indices of ``ok`` (into c and the rows of s) whose pool bound\n"
"c + max_k (pool_rest[k] - (cap - s) . pool_mu[k]) is at most ``limit`` (_CutPool.prune's\n"
"filter; one multiplier past the limit decides, as rounding is monotone).");

static PyObject *pool_keep(PyObject *self, PyObject *args)
{
    Py_buffer bok, bc, bs, bcap, bmu, brest;
    double limit;
    Py_ssize_t B;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*dn", &bok, &bc, &bs, &bcap, &bmu, &brest, &limit, &B))
        return NULL;
    PyObject *result = NULL;
    Py_buffer *all[] = {&bok, &bc, &bs, &bcap, &bmu, &brest};
    Py_ssize_t n = bc.len / (Py_ssize_t)sizeof(double), m = bok.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t K = brest.len / (Py_ssize_t)sizeof(double);
    if (need_batches(B))
        goto fail;
    if (need(&bs, n * B, sizeof(double), "s") || need(&bcap, B, sizeof(double), "cap")
        || need(&bmu, K * B, sizeof(double), "pool_mu"))
        goto fail;
    const int64_t *ok = bok.buf;
    for (Py_ssize_t i = 0; i < m; i++)
        if (ok[i] < 0 || ok[i] >= n) {
            PyErr_SetString(PyExc_ValueError, "ok: an index outside c");
            goto fail;
        }
    int64_t *kept = malloc(sizeof(int64_t) * (m ? m : 1));
    double *d = malloc(sizeof(double) * B);
    if (!kept || !d) {
        free(kept); free(d);
        PyErr_NoMemory();
        goto fail;
    }
    const double *c = bc.buf, *st = bs.buf, *cap = bcap.buf, *mu = bmu.buf, *rest = brest.buf;
    Py_ssize_t n_kept = 0, last_cut = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < m; i++) {
        int64_t r = ok[i];
        for (Py_ssize_t b = 0; b < B; b++)
            d[b] = cap[b] - st[r * B + b];
        if (!pool_cuts(c[r], d, mu, rest, K, B, limit, &last_cut))
            kept[n_kept++] = r;
    }
    Py_END_ALLOW_THREADS
    result = PyBytes_FromStringAndSize((const char *)kept, n_kept * (Py_ssize_t)sizeof(int64_t));
    free(kept); free(d);
fail:
    release(all, sizeof(all) / sizeof(all[0]));
    return result;
}

/* -- the search's per-batch fronts (solvers/_ilp_bounds.py:search, _front_of_sum) ---------- */

typedef struct {
    Py_ssize_t n, cap;
    double *c, *t;
} Points;

static int points_reserve(Points *a, Py_ssize_t need)
{
    Py_ssize_t cap = grown(a->cap, need, 256);
    if (!cap)
        return 0;
    if (regrow(&a->c, sizeof(double) * (size_t)cap) || regrow(&a->t, sizeof(double) * (size_t)cap))
        return NOMEM;
    a->cap = cap;
    return 0;
}

/* Of n points in time order (key: (time, index into c)), append to ``out`` (room reserved) the
 * first and every one cheaper than all before it: the least value at every time, as _front
 * keeps them (c < np.minimum.accumulate of the earlier ones). */
static void staircase(const Keyed *key, Py_ssize_t n, const double *c, Points *out)
{
    double run = INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = c[key[i].index];
        if (i == 0 || v < run) {
            out->c[out->n] = v;
            out->t[out->n] = key[i].value;
            out->n++;
        }
        if (i == 0 || v < run)
            run = v;
    }
}

PyDoc_STRVAR(suffix_fronts_doc,
"suffix_fronts(vals, lat, offsets, order, limits, batches, B, deadline) -> (fc, ft, starts)\n\n"
"The per-batch fronts of solvers/_ilp_bounds.py:search, for F batches at once: for front set f\n"
"(batch b = batches[f]) front L is the point (0, 0) and front j the least value at every time of\n"
"layer order[j]'s points (value vals[f, i], time lat[i, b]) plus front j + 1, over sums of\n"
"value at most limits[f, j] (_front_of_sum: the same least value at every time). Layer l's\n"
"points are rows offsets[l]:offsets[l + 1] of lat (n, B) and of each row of vals (F, n).\n"
"fc, ft: float64 bytes of the fronts, layer-major (j = 0..L, then f); starts: int64 bytes\n"
"((L + 1) * F + 1) where front (j, f) begins, at index j * F + f. TimeoutError past\n"
"``deadline`` (time.perf_counter's clock).");

static PyObject *suffix_fronts(PyObject *self, PyObject *args)
{
    Py_buffer bv, blat, boff, border, blim, bbat;
    Py_ssize_t B;
    double deadline;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*nd", &bv, &blat, &boff, &border, &blim, &bbat, &B,
                          &deadline))
        return NULL;
    PyObject *result = NULL;
    Py_buffer *all[] = {&bv, &blat, &boff, &border, &blim, &bbat};
    Py_ssize_t L = border.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t F = bbat.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t n = 0;
    Points *fr = NULL, own = {0, 0, NULL, NULL};
    Keyed *key = NULL;
    double *sums = NULL;
    int64_t *at = NULL; /* per set f, L + 2 entries: where front L - k starts in fr[f], then the end */
    Py_ssize_t key_cap = 0;
    if (need_batches(B))
        goto fail;
    n = blat.len / (Py_ssize_t)sizeof(double) / B;
    if (need(&bv, F * n, sizeof(double), "vals") || need(&blat, n * B, sizeof(double), "lat")
        || need(&boff, L + 1, sizeof(int64_t), "offsets") || need(&blim, F * L, sizeof(double), "limits"))
        goto fail;
    const double *vals = bv.buf, *lat = blat.buf, *limits = blim.buf;
    const int64_t *off = boff.buf, *order = border.buf, *batches = bbat.buf;
    int bad = off[0] != 0 || off[L] != n;
    for (Py_ssize_t l = 0; l < L && !bad; l++)
        bad = off[l + 1] < off[l] || order[l] < 0 || order[l] >= L;
    for (Py_ssize_t f = 0; f < F && !bad; f++)
        bad = batches[f] < 0 || batches[f] >= B;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "suffix_fronts: a batch, offset or layer outside the arrays");
        goto fail;
    }
    fr = calloc((size_t)(F ? F : 1), sizeof(Points));
    at = malloc(sizeof(int64_t) * (size_t)((L + 2) * (F ? F : 1)));
    Py_ssize_t r = fr && at ? 0 : NOMEM;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t f = 0; f < F && !r; f++) {
        Py_ssize_t b = batches[f];
        Points *q = &fr[f];
        int64_t *a = at + f * (L + 2);
        const double *v = vals + f * n, *lim = limits + f * L;
        if (points_reserve(q, 1)) {
            r = NOMEM;
            break;
        }
        q->c[0] = 0.0;
        q->t[0] = 0.0;
        q->n = 1;
        a[0] = 0;
        a[1] = 1;
        for (Py_ssize_t j = L - 1; j >= 0 && !r; j--) {
            if (now_s() > deadline) {
                r = TIMEOUT;
                break;
            }
            Py_ssize_t lo = off[order[j]], m = off[order[j] + 1] - lo;
            Py_ssize_t prev = a[L - 1 - j], nf = a[L - j] - prev;
            Py_ssize_t most = m > nf * m ? m : nf * m;
            if (most > key_cap) {
                key_cap = grown(key_cap, most, 256);
                if (regrow(&key, sizeof(Keyed) * (size_t)key_cap)
                    || regrow(&sums, sizeof(double) * (size_t)key_cap)) {
                    r = NOMEM;
                    break;
                }
            }
            for (Py_ssize_t i = 0; i < m; i++) {
                key[i].value = lat[(lo + i) * B + b];
                key[i].index = i;
            }
            qsort(key, (size_t)m, sizeof(Keyed), by_value);
            own.n = 0;
            if (points_reserve(&own, m)) {
                r = NOMEM;
                break;
            }
            staircase(key, m, v + lo, &own);
            Py_ssize_t k = 0; /* sums in (own point, front point) order, as numpy ravels them */
            for (Py_ssize_t p = 0; p < own.n; p++)
                for (Py_ssize_t i = 0; i < nf; i++) {
                    double c = own.c[p] + q->c[prev + i];
                    if (c <= lim[j]) {
                        key[k].value = own.t[p] + q->t[prev + i];
                        key[k].index = k;
                        sums[k++] = c;
                    }
                }
            qsort(key, (size_t)k, sizeof(Keyed), by_value); /* stable: ties in index order */
            if (points_reserve(q, q->n + k)) {
                r = NOMEM;
                break;
            }
            staircase(key, k, sums, q);
            a[L - j + 1] = q->n;
        }
    }
    Py_END_ALLOW_THREADS
    if (raise_for(r, "search fronts"))
        goto fail;
    Py_ssize_t total = 0;
    for (Py_ssize_t f = 0; f < F; f++)
        total += fr[f].n;
    PyObject *fc = PyBytes_FromStringAndSize(NULL, total * (Py_ssize_t)sizeof(double));
    PyObject *ft = PyBytes_FromStringAndSize(NULL, total * (Py_ssize_t)sizeof(double));
    PyObject *st = PyBytes_FromStringAndSize(NULL, ((L + 1) * F + 1) * (Py_ssize_t)sizeof(int64_t));
    if (fc && ft && st) {
        double *oc = (double *)PyBytes_AS_STRING(fc), *ot = (double *)PyBytes_AS_STRING(ft);
        int64_t *os = (int64_t *)PyBytes_AS_STRING(st);
        Py_ssize_t pos = 0;
        for (Py_ssize_t j = 0; j <= L; j++)
            for (Py_ssize_t f = 0; f < F; f++) { /* front j of set f was built (L - j)-th */
                const int64_t *a = at + f * (L + 2);
                Py_ssize_t from = a[L - j], len = a[L - j + 1] - from;
                memcpy(oc + pos, fr[f].c + from, sizeof(double) * (size_t)len);
                memcpy(ot + pos, fr[f].t + from, sizeof(double) * (size_t)len);
                os[j * F + f] = pos;
                pos += len;
            }
        os[(L + 1) * F] = pos;
        result = PyTuple_Pack(3, fc, ft, st);
    }
    Py_XDECREF(fc);
    Py_XDECREF(ft);
    Py_XDECREF(st);
fail:
    if (fr)
        for (Py_ssize_t f = 0; f < F; f++) {
            free(fr[f].c);
            free(fr[f].t);
        }
    free(fr); free(own.c); free(own.t); free(key); free(sums); free(at);
    release(all, sizeof(all) / sizeof(all[0]));
    return result;
}

static PyMethodDef methods[] = {
    {"pool_keep", pool_keep, METH_VARARGS, pool_keep_doc},
    {"dominated", dominated, METH_VARARGS, dominated_doc},
    {"cheapest_within", cheapest_within, METH_VARARGS, cheapest_within_doc},
    {"price_table", price_table, METH_VARARGS, price_table_doc},
    {"exact_table", exact_table, METH_VARARGS, exact_table_doc},
    {"variant_floors", variant_floors, METH_VARARGS, variant_floors_doc},
    {"price_layer", price_layer, METH_VARARGS, price_layer_doc},
    {"search_layer", search_layer, METH_VARARGS, search_layer_doc},
    {"search_last", search_last, METH_VARARGS, search_last_doc},
    {"suffix_fronts", suffix_fronts, METH_VARARGS, suffix_fronts_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ilp_cprice",
    "Compiled layer DPs of the exact solver (see solvers/_ilp_cprice.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ilp_cprice(void)
{
    return PyModule_Create(&module);
}
