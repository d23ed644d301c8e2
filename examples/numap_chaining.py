"""Several tasks in one NuMap: side by side, and chained (one task's results feed the next)."""

from numap import NuMap


def tokenize(line):
    return line.split()


def count(words):
    return len(words)


LINES = ["the quick brown fox", "jumps over", "the lazy dog", ""]

if __name__ == "__main__":
    numap = NuMap(worker_num=2)
    words = numap.add_task(tokenize, LINES)  # task 0
    counts = numap.add_task(count, words)  # task 1 reads task 0's results
    lengths = numap.add_task(len, LINES)  # task 2 runs beside them
    numap.start()
    for n_words, n_chars in zip(counts, lengths):
        print(f"{n_words} words, {n_chars} characters")
    numap.stop()

    # A task's results can also feed a task of another NuMap: here threads after processes.
    with NuMap(worker_num=2) as parse, NuMap(worker_type="thread", worker_num=4) as fetch:
        numbers = parse.add_task(int, ["1", "2", "3"])
        parse.start()
        fetch.add_task(hex, numbers)
        fetch.start()
        print("chained across NuMaps:", list(fetch))
