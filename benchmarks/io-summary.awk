# Turns the "bench:" lines of io.sh into a table: per run and workload, the request rate, mean
# latency, and KVM exits and interrupt injections per request (fio) or per MiB sent (TCP),
# from the counter samples taken at the workload's start and end marks.
$1 == "bench:" && ($3 ~ /^(start|end)-/) {
    split($3, mark, "-")
    for (i = 4; i <= NF; i++) { split($i, kv, "="); counter[$2, mark[1], mark[2], kv[1]] = kv[2] }
}
$1 == "bench:" && $3 == "bench-fio" {
    qd = $4; sub(/qd=/, "", qd); workload = "qd" qd
    iops = ""; lat = ""; ios = ""
    for (i = 5; i <= NF; i++) {
        if ($i ~ /^IOPS=/) { iops = $i; sub(/IOPS=/, "", iops) }
        if ($i ~ /^avg=/) { lat = $i; sub(/avg=/, "", lat); sub(/,$/, "", lat); latunit = $0; sub(/.*lat \(/, "", latunit); sub(/\).*/, "", latunit) }
        if ($i ~ /^ios=/) { ios = $i; sub(/ios=/, "", ios) }
    }
    rate[$2, workload] = iops " IOPS"; latency[$2, workload] = lat " " latunit; requests[$2, workload] = ios
    order[++count] = $2 SUBSEP workload
}
$1 == "bench:" && $3 == "bench-tcp" {
    # An empty line (iperf3 failed) is no result: nothing from an earlier run may stand in for it.
    mib = ""; mbit = ""
    for (i = 4; i <= NF; i++) {
        if ($i == "MBytes") mib = $(i - 1) * 1e6 / 1048576
        if ($i == "GBytes") mib = $(i - 1) * 1e9 / 1048576
        if ($i == "Mbits/sec") mbit = $(i - 1)
        if ($i == "Gbits/sec") mbit = $(i - 1) * 1000
    }
    if (mbit == "") next
    rate[$2, "tcp"] = mbit " Mbit/s"; latency[$2, "tcp"] = "-"; requests[$2, "tcp"] = mib
    order[++count] = $2 SUBSEP "tcp"
}
END {
    printf "| run | workload | rate | mean latency | exits/req | irq injections/req |\n| --- | --- | --- | --- | --- | --- |\n"
    for (k = 1; k <= count; k++) {
        split(order[k], key, SUBSEP); run = key[1]; workload = key[2]
        n = requests[run, workload]
        exits = counter[run, "end", workload, "exits"] - counter[run, "start", workload, "exits"]
        irqs = counter[run, "end", workload, "irq_injections"] - counter[run, "start", workload, "irq_injections"]
        unit = workload == "tcp" ? " per MiB" : ""
        printf "| %s | %s | %s | %s | %s | %s |\n", run, workload, rate[run, workload], latency[run, workload],
            (n > 0 ? sprintf("%.2f%s", exits / n, unit) : "?"), (n > 0 ? sprintf("%.2f%s", irqs / n, unit) : "?")
    }
}
