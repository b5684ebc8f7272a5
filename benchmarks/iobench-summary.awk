# Turns iobench.sh's "bench:" lines into a Markdown table: per run and workload the median run
# by rate, its mean latency, KVM exits, guest kicks and (hvctl only) completion interrupts per
# request, and the rate as a ratio to the best QEMU configuration of the same workload.
$1 == "bench:" && $4 ~ /^iops=/ {
    key = $2 SUBSEP $3
    if (!(key in runs)) order[++count] = key
    n = ++runs[key]
    for (i = 4; i <= NF; i++) { split($i, kv, "="); value[key, n, kv[1]] = kv[2] }
}
$1 == "bench:" && $4 == "guest-error" { print "guest error in " $2 " " $3 ":" substr($0, index($0, "guest-error") + 11) > "/dev/stderr" }
# The median run by rate; for an open-loop workload (rate=, where every run that keeps up has the
# same rate) by mean latency instead.
function median(key,    n, i, j, t, idx, by) {
    n = runs[key]; by = key ~ /rate=/ ? "lat_avg_ns" : "iops"
    for (i = 1; i <= n; i++) idx[i] = i
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) {
        if (value[key, idx[j], by] < value[key, idx[i], by]) { t = idx[i]; idx[i] = idx[j]; idx[j] = t }
    }
    return idx[int((n + 1) / 2)]
}
END {
    for (k = 1; k <= count; k++) {
        key = order[k]; split(key, part, SUBSEP); m[key] = median(key)
        if (part[1] ~ /^qemu/ && value[key, m[key], "iops"] > best[part[2]]) best[part[2]] = value[key, m[key], "iops"]
    }
    print "| run | workload | IOPS | mean latency | exits/req | kicks/req | interrupts/req | errors | vs best QEMU |"
    print "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for (k = 1; k <= count; k++) {
        key = order[k]; split(key, part, SUBSEP); i = m[key]; req = value[key, i, "requests"]
        irqs = value[key, i, "interrupts"] == "-" || !req ? "-" : sprintf("%.3f", value[key, i, "interrupts"] / req)
        exits = value[key, i, "exits"] == "-" || !req ? "-" : sprintf("%.3f", value[key, i, "exits"] / req)
        # The stream has no per-request latency.
        latency = part[2] ~ /stream/ ? "-" : sprintf("%.1f µs", value[key, i, "lat_avg_ns"] / 1000)
        printf "| %s | %s | %d | %s | %s | %.3f | %s | %d | %.2f× |\n", part[1], part[2], value[key, i, "iops"],
            latency, exits, req ? value[key, i, "kicks"] / req : 0,
            irqs, value[key, i, "errors"], best[part[2]] ? value[key, i, "iops"] / best[part[2]] : 0
    }
}
