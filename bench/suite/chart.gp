# bench/suite/chart.gp - the suite's chart: time and peak RSS relative to
# glibc, a group of bars per workload, a bar per allocator, log scale, each
# bar drawn from 1 (glibc) up or down to its ratio.
# Run by bench/suite/suite.c as
#   gnuplot -e "datafile='suite.dat'; output='suite.png'; allocators='glibc jemalloc ...'" chart.gp
# The data file has a row per workload and two columns (time, RSS) per
# allocator in the order of `allocators`; "?" marks a failed cell: no bar,
# the word FAILED in red instead.
# glibc, the baseline, gets no bar of its own.

set terminal pngcairo size 1400,900 font "sans,10" noenhanced
set output output
set style fill solid 0.85 border -1
set logscale y 2
set grid ytics
unset key
set xtics rotate by -30 nomirror
set ytics format "%.2g"
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lw 1.5 lc "black" front

n = words(allocators)
first = (word(allocators, 1) eq "glibc") ? 2 : 1
bars = n - first + 1
width = 0.8 / bars
x(i) = $0 + (i - first + 0.5) * width - 0.4
low(v) = v < 1 ? v : 1
high(v) = v < 1 ? 1 : v
val(c) = strcol(c) eq "?" ? NaN : column(c)
stats datafile using 0 nooutput
set xrange [-0.6 : STATS_records - 0.4]

set multiplot layout 2,1 title "kmm bench/suite: relative to glibc (below the line is better; log scale)"
set ylabel "wall time / glibc"
# The first two series draw nothing: the workloads' names as x tics, and
# two invisible points so that the axis always spans 0.5..2 around glibc.
plot datafile using 0:(NaN):xtic(1) notitle, '+' using (0):(1):(0.5):(2) with yerrorbars ps 0 lc rgb "#ffffffff" notitle, \
     for [i=first:n] datafile using (x(i)):(val(2*i)):(x(i)-width/2):(x(i)+width/2):(low(val(2*i))):(high(val(2*i))) \
       with boxxyerror lc i title word(allocators, i), \
     for [i=first:n] datafile using (x(i)):(1):(strcol(2*i) eq "?" ? "FAILED" : "") \
       with labels rotate by 90 left offset 0,0.5 tc "red" notitle
set ylabel "peak RSS / glibc"
set key below horizontal width 2
# The first two series draw nothing: the workloads' names as x tics, and
# two invisible points so that the axis always spans 0.5..2 around glibc.
plot datafile using 0:(NaN):xtic(1) notitle, '+' using (0):(1):(0.5):(2) with yerrorbars ps 0 lc rgb "#ffffffff" notitle, \
     for [i=first:n] datafile using (x(i)):(val(2*i+1)):(x(i)-width/2):(x(i)+width/2):(low(val(2*i+1))):(high(val(2*i+1))) \
       with boxxyerror lc i title word(allocators, i), \
     for [i=first:n] datafile using (x(i)):(1):(strcol(2*i+1) eq "?" ? "FAILED" : "") \
       with labels rotate by 90 left offset 0,0.5 tc "red" notitle
unset multiplot
