package apiclient

// Len is how many accounts bs keeps a budget for.
func (bs *Budgets) Len() int {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return len(bs.by)
}
