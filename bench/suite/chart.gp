# bench/suite/chart.gp - the suite's chart: time and peak RSS relative to
# glibc, a group of bars per workload, a bar per allocator, log scale.
# Run by bench/suite/suite.c as
#   gnuplot -e "datafile='suite.dat'; output='suite.png'; allocators='glibc jemalloc ...'" chart.gp
# The data file has a row per workload and two columns (time, RSS) per
# allocator in the order of `allocators`; "?" marks a failed cell (no bar).

set terminal pngcairo size 1400,900 font "sans,10" noenhanced
set output output
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 2
set grid ytics
set key top left horizontal
set xtics rotate by -30 nomirror
n = words(allocators)

set multiplot layout 2,1 title "kmm bench/suite: relative to glibc (lower is better; log scale)"
set ylabel "wall time / glibc"
plot for [i=1:n] datafile using 2*i:xtic(1) title word(allocators, i), 1 with lines lc "black" dt 2 notitle
set ylabel "peak RSS / glibc"
plot for [i=1:n] datafile using 2*i+1:xtic(1) title word(allocators, i), 1 with lines lc "black" dt 2 notitle
unset multiplot
