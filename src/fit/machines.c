/*
 * machines — the hardware `llmap fit --target` can predict for, and the profile of this machine.
 *
 * Table figures are the vendors' published specifications:
 *  - Apple: memory bandwidth and unified-memory options from Apple's press releases and tech
 *    specs pages (M1 Nov 2020: 68.25 GB/s; M1 Pro/Max Oct 2021: 200/400 GB/s; M1 Ultra Mar 2022:
 *    800 GB/s; M2 Jun 2022: 100 GB/s; M2 Pro/Max Jan 2023: 200/400 GB/s; M2 Ultra Jun 2023:
 *    800 GB/s; M3 / M3 Pro / M3 Max Oct 2023: 100 / 150 / 400 GB/s (16-core CPU Max); M4 May 2024:
 *    120 GB/s; M4 Pro / M4 Max Oct 2024: 273 / 546 GB/s (16-core CPU Max)).
 *    Usable memory is Metal's recommended GPU working set, about 2/3 of RAM up to 36 GB and 3/4
 *    above (what llama.cpp and Ollama report on those machines); the CPU path is held to the
 *    same budget so a prediction does not change when the GPU backend lands.
 *  - NVIDIA: VRAM and memory bandwidth from NVIDIA's product specification pages (GeForce RTX
 *    30/40/50 series, data-center T4, L4, A10, A100, H100 datasheets). Usable VRAM leaves 0.5 GiB
 *    for the CUDA context. No paging: a model that does not fit in VRAM does not run there (partial
 *    offload is not modelled yet).
 *  - Efficiency (share of bandwidth reached in generation) for other hardware is an assumption,
 *    0.75, in line with published llama.cpp results on Metal and CUDA; this machine's is measured.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fit/fit.h"
#include "mem/mem.h"

#define GB 1000000000.0
#define GIB (1024.0 * 1024.0 * 1024.0)
#define APPLE(id_, desc_, ram_gib, bw_gbs)                                                               \
    {.id = id_, .desc = desc_, .mem_bytes = (uint64_t)((ram_gib) * GIB),                                   \
     .usable_bytes = (uint64_t)((ram_gib) * GIB * ((ram_gib) > 36 ? 0.75 : 2.0 / 3.0)),                    \
     .bw_bytes_s = (bw_gbs) * GB, .efficiency = 0.75, .disk_bytes_s = 5.0 * GB,                             \
     .source = "Apple tech specs / press releases"}
#define NVIDIA(id_, desc_, vram_gib, bw_gbs)                                                             \
    {.id = id_, .desc = desc_, .mem_bytes = (uint64_t)((vram_gib) * GIB),                                  \
     .usable_bytes = (uint64_t)(((vram_gib) - 0.5) * GIB), .bw_bytes_s = (bw_gbs) * GB, .efficiency = 0.75, \
     .source = "NVIDIA product specifications"}

static const llm_machine TABLE[] = {
    APPLE("m1-8", "Apple M1, 8 GB", 8, 68.25),
    APPLE("m1-16", "Apple M1, 16 GB", 16, 68.25),
    APPLE("m1-pro-32", "Apple M1 Pro, 32 GB", 32, 200),
    APPLE("m1-max-64", "Apple M1 Max, 64 GB", 64, 400),
    APPLE("m1-ultra-128", "Apple M1 Ultra, 128 GB", 128, 800),
    APPLE("m2-8", "Apple M2, 8 GB", 8, 100),
    APPLE("m2-16", "Apple M2, 16 GB", 16, 100),
    APPLE("m2-24", "Apple M2, 24 GB", 24, 100),
    APPLE("m2-pro-32", "Apple M2 Pro, 32 GB", 32, 200),
    APPLE("m2-max-96", "Apple M2 Max, 96 GB", 96, 400),
    APPLE("m2-ultra-192", "Apple M2 Ultra, 192 GB", 192, 800),
    APPLE("m3-8", "Apple M3, 8 GB", 8, 100),
    APPLE("m3-16", "Apple M3, 16 GB", 16, 100),
    APPLE("m3-pro-36", "Apple M3 Pro, 36 GB", 36, 150),
    APPLE("m3-max-128", "Apple M3 Max (16-core CPU), 128 GB", 128, 400),
    APPLE("m4-16", "Apple M4, 16 GB", 16, 120),
    APPLE("m4-32", "Apple M4, 32 GB", 32, 120),
    APPLE("m4-pro-48", "Apple M4 Pro, 48 GB", 48, 273),
    APPLE("m4-max-128", "Apple M4 Max (16-core CPU), 128 GB", 128, 546),
    NVIDIA("rtx-3060", "NVIDIA GeForce RTX 3060, 12 GB", 12, 360),
    NVIDIA("rtx-3080", "NVIDIA GeForce RTX 3080, 10 GB", 10, 760),
    NVIDIA("rtx-3090", "NVIDIA GeForce RTX 3090, 24 GB", 24, 936),
    NVIDIA("rtx-4060", "NVIDIA GeForce RTX 4060, 8 GB", 8, 272),
    NVIDIA("rtx-4060-ti-16", "NVIDIA GeForce RTX 4060 Ti, 16 GB", 16, 288),
    NVIDIA("rtx-4070", "NVIDIA GeForce RTX 4070, 12 GB", 12, 504),
    NVIDIA("rtx-4080", "NVIDIA GeForce RTX 4080, 16 GB", 16, 716.8),
    NVIDIA("rtx-4090", "NVIDIA GeForce RTX 4090, 24 GB", 24, 1008),
    NVIDIA("rtx-5090", "NVIDIA GeForce RTX 5090, 32 GB", 32, 1792),
    NVIDIA("t4", "NVIDIA T4, 16 GB", 16, 320),
    NVIDIA("l4", "NVIDIA L4, 24 GB", 24, 300),
    NVIDIA("a10", "NVIDIA A10, 24 GB", 24, 600),
    NVIDIA("a100-40", "NVIDIA A100 PCIe, 40 GB", 40, 1555),
    NVIDIA("a100-80", "NVIDIA A100 SXM, 80 GB", 80, 2039),
    NVIDIA("h100-80", "NVIDIA H100 SXM, 80 GB", 80, 3350),
    {0},
};

const llm_machine *llm_machine_table(void) { return TABLE; }

const llm_machine *llm_machine_find(const char *id)
{
    for (const llm_machine *m = TABLE; m->id; m++)
        if (!strcmp(m->id, id))
            return m;
    return NULL;
}

/* ---- this machine ------------------------------------------------------------------------- */

static char *profile_path(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    llm_buf b = {0};
    if (xdg && *xdg)
        llm_buf_printf(&b, "%s/llmap", xdg);
    else
        llm_buf_printf(&b, "%s/.cache/llmap", home && *home ? home : "/tmp");
    char *slash = strrchr(b.data, '/'); /* the cache directory itself may not exist yet */
    *slash = 0;
    mkdir(b.data, 0755);
    *slash = '/';
    mkdir(b.data, 0755);
    llm_buf_puts(&b, "/machine.json");
    return b.data;
}

static int load_profile(llm_machine *m)
{
    char *path = profile_path();
    FILE *f = fopen(path, "r");
    free(path);
    if (!f)
        return -1;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *o = cJSON_Parse(buf);
    const cJSON *bw = cJSON_GetObjectItem(o, "mem_bw_bytes_s"), *eff = cJSON_GetObjectItem(o, "efficiency"),
                *disk = cJSON_GetObjectItem(o, "disk_bytes_s");
    int rc = -1;
    if (cJSON_IsNumber(bw) && bw->valuedouble > 1e8) {
        m->bw_bytes_s = bw->valuedouble;
        if (cJSON_IsNumber(eff) && eff->valuedouble > 0.05 && eff->valuedouble <= 1.2)
            m->efficiency = eff->valuedouble;
        if (cJSON_IsNumber(disk) && disk->valuedouble > 1e6)
            m->disk_bytes_s = disk->valuedouble;
        const cJSON *ff = cJSON_GetObjectItem(o, "forward_factor");
        if (cJSON_IsNumber(ff) && ff->valuedouble > 0.1 && ff->valuedouble <= 1.5)
            m->forward_factor = ff->valuedouble;
        const cJSON *ae = cJSON_GetObjectItem(o, "attn_efficiency");
        if (cJSON_IsNumber(ae) && ae->valuedouble > 0.005 && ae->valuedouble <= 2)
            m->attn_efficiency = ae->valuedouble;
        const cJSON *bt = cJSON_GetObjectItem(o, "efficiency_by_type"), *e;
        cJSON_ArrayForEach(e, bt)
        {
            int t = llm_type_from_name(e->string);
            if (t >= 0 && cJSON_IsNumber(e) && e->valuedouble > 0.01 && e->valuedouble < 2)
                m->eff_by_type[t] = (float)e->valuedouble;
        }
        const cJSON *ft = cJSON_GetObjectItem(o, "forward_factor_by_type");
        cJSON_ArrayForEach(e, ft)
        {
            int t = llm_type_from_name(e->string);
            if (t >= 0 && cJSON_IsNumber(e) && e->valuedouble > 0.1 && e->valuedouble <= 1.5)
                m->forward_by_type[t] = (float)e->valuedouble;
        }
        rc = 0;
    }
    cJSON_Delete(o);
    return rc;
}

static cJSON *read_profile_json(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cJSON_CreateObject();
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *o = cJSON_Parse(buf);
    return cJSON_IsObject(o) ? o : (cJSON_Delete(o), cJSON_CreateObject());
}

static void set_number(cJSON *o, const char *key, double v)
{
    if (v <= 0)
        return;
    cJSON_DeleteItemFromObject(o, key);
    cJSON_AddNumberToObject(o, key, v);
}

static int write_profile(cJSON *o, const char *path, llm_err *err)
{
    char *txt = cJSON_Print(o);
    llm_buf tmp = {0};
    llm_buf_printf(&tmp, "%s.tmp", path);
    FILE *f = fopen(tmp.data, "w");
    int rc = 0;
    if (!f || fputs(txt, f) < 0 || fclose(f) || rename(tmp.data, path))
        rc = llm_errf(err, "%s: cannot save the machine profile: %s", path, strerror(errno));
    free(txt);
    llm_buf_free(&tmp);
    return rc;
}

int llm_machine_save(double bw_bytes_s, double efficiency, double disk_bytes_s, llm_err *err)
{
    char *path = profile_path();
    cJSON *o = read_profile_json(path);
    set_number(o, "mem_bw_bytes_s", bw_bytes_s);
    set_number(o, "efficiency", efficiency);
    set_number(o, "disk_bytes_s", disk_bytes_s);
    int rc = write_profile(o, path, err);
    cJSON_Delete(o);
    free(path);
    return rc;
}

/* The object under key in o, made (or remade, if it was something else) when missing. */
static cJSON *object_item(cJSON *o, const char *key)
{
    cJSON *it = cJSON_GetObjectItem(o, key);
    if (!cJSON_IsObject(it)) {
        cJSON_DeleteItemFromObject(o, key);
        it = cJSON_AddObjectToObject(o, key);
    }
    return it;
}

int llm_machine_save_forward_factor(double factor, int main_type, llm_err *err)
{
    char *path = profile_path();
    cJSON *o = read_profile_json(path);
    set_number(o, "forward_factor", factor);
    if (main_type >= 0 && main_type < LLM_TYPE_COUNT)
        set_number(object_item(o, "forward_factor_by_type"), llm_type_name((uint32_t)main_type), factor);
    int rc = write_profile(o, path, err);
    cJSON_Delete(o);
    free(path);
    return rc;
}

int llm_machine_save_attn_efficiency(double efficiency, llm_err *err)
{
    char *path = profile_path();
    cJSON *o = read_profile_json(path);
    set_number(o, "attn_efficiency", efficiency);
    int rc = write_profile(o, path, err);
    cJSON_Delete(o);
    free(path);
    return rc;
}

int llm_machine_save_kernels(double bw_bytes_s, const float ratio_by_type[LLM_TYPE_COUNT], llm_err *err)
{
    char *path = profile_path();
    cJSON *o = read_profile_json(path);
    set_number(o, "mem_bw_bytes_s", bw_bytes_s);
    cJSON *bt = object_item(o, "efficiency_by_type");
    for (int t = 0; t < LLM_TYPE_COUNT; t++)
        if (ratio_by_type[t] > 0)
            set_number(bt, llm_type_name((uint32_t)t), ratio_by_type[t]);
    int rc = write_profile(o, path, err);
    cJSON_Delete(o);
    free(path);
    return rc;
}

/* The quick probe (src/mem/bandwidth.c, the one `llmap bench` runs on its pool) on one thread per
 * CPU: 128 MiB, 4x the L3 of common desktop CPUs, best of 2 passes. */
static double quick_bandwidth(int n_threads)
{
    llm_runner own = {.n_threads = n_threads};
    double gbs = llm_mem_bandwidth(128u << 20, &own, 2);
    return gbs > 0 ? gbs * GB : 10e9; /* out of memory: a typical figure rather than none */
}

void llm_machine_this(llm_machine *m, bool *from_cache)
{
    llm_sysmem s;
    llm_sysmem_get(&s);
    *m = (llm_machine){
        .id = "this",
        .desc = "this machine",
        .mem_bytes = s.total,
        .usable_bytes = llm_sysmem_usable(&s),
        .efficiency = 0.8,        /* until `llmap bench` measured ours */
        .disk_bytes_s = 1.0 * GB, /* a typical SSD until measured */
        .measured = true,
        .source = "measured",
    };
    if (s.unified && s.gpu_working_set && s.gpu_working_set < m->usable_bytes)
        m->usable_bytes = s.gpu_working_set;
    *from_cache = load_profile(m) == 0;
    if (!*from_cache) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        m->bw_bytes_s = quick_bandwidth(n > 0 ? (int)n : 1);
    }
}
